{#
    Why a person was not messaged: every candidate message that is not on send_list_messages, and
    every preferred channel a sent message had to skip.
    - exclusion_scope `message`: the message was not sent. Either one row with a message-level
      reason (product_inactive, already_sent, daily_cap, weekly_cap; channel = the route it would have
      taken), or, when no channel could be used, one row per channel of the product with that
      channel's reason.
    - exclusion_scope `channel`: the message went out (or was held for a message-level reason) on
      another route; this channel was skipped for the reason given.
    Grain: (lead_id, product_id, workflow, step, channel).
#}

with

decisions as (
    select * from {{ ref('int_message_candidates_budgeted') }}
),

options as (
    select * from {{ ref('int_message_channel_options_ranked') }}
),

message_exclusions as (
    select
        idempotency_key,
        lead_id,
        product_id,
        workflow,
        step,
        channel,
        decision as reason,
        decision_detail as detail,
        'message' as exclusion_scope
    from decisions
    where decision not in ('send', 'no_usable_channel')
),

channel_exclusions as (
    select
        options.idempotency_key,
        options.lead_id,
        options.product_id,
        options.workflow,
        options.step,
        options.channel,
        options.block_reason as reason,
        options.block_detail as detail,
        case
            when decisions.decision = 'no_usable_channel' then 'message' else 'channel'
        end as exclusion_scope
    from options
    inner join decisions
        on options.idempotency_key = decisions.idempotency_key
    where not options.is_usable
),

exclusions as (
    select * from message_exclusions
    union all
    select * from channel_exclusions
),

final as (
    select
        cast(exclusions.idempotency_key as text) as idempotency_key,
        cast(exclusions.lead_id as text) as lead_id,
        cast(exclusions.product_id as text) as product_id,
        cast(exclusions.workflow as text) as workflow,
        cast(exclusions.step as text) as step,
        cast(exclusions.channel as text) as channel,
        cast(exclusions.reason as text) as reason,
        cast(exclusions.detail as text) as detail,
        cast(exclusions.exclusion_scope as text) as exclusion_scope,
        cast(decisions.stage as text) as stage,
        cast(decisions.score as integer) as score,
        cast(decisions.priority as integer) as priority,
        decisions.due_at,
        {{ leadflow.as_of() }} as evaluated_at
    from exclusions
    inner join decisions
        on exclusions.idempotency_key = decisions.idempotency_key
)

select * from final
