{#
    The decision for every candidate message, one row per idempotency_key: `send`, or why not:
    - product_inactive: the product is switched off (products.is_active);
    - already_sent: the ledger holds the key as `sent` (or, for a `once` step, any sent message of
      the same lead, product, workflow and step, so a changed channel order never re-sends it);
    - no_usable_channel: no channel of the product may be used (the per-channel reasons are in
      int_message_channel_options_ranked / fct_message_exclusions);
    - daily_cap / weekly_cap: one contact-pressure budget per lead across all products: messages
      the ledger recorded `sent` on the same local day / ISO week (by updated_at, in the lead's time
      zone), plus the lead's messages of this build ranked by products.priority (lower wins), then
      workflow_steps.step_order, then due_at, may not exceed activation_max_messages_per_day /
      activation_max_messages_per_week. A capped message is not lost: it is a candidate again on
      the next build, with the same key.
#}

-- a table, not a view: the send list, the exclusions mart and this model's tests each read it, and a view
-- would recompute the candidate chain for every one of them
{{ config(materialized='table') }}

with

candidates as (
    select * from {{ ref('int_message_candidates_scheduled') }}
),

options as (
    select * from {{ ref('int_message_channel_options_ranked') }}
),

ledger as (
    select * from {{ ref('stg_activation__delivery_ledger') }}
),

-- control groups (int_holdout_assignments): never messaged, whatever their stage
holdouts as (
    select * from {{ ref('int_holdout_assignments') }}
    where is_holdout
),

chosen as (
    select * from options
    where usable_rank = 1
),

fallbacks as (
    select
        idempotency_key,
        string_agg(channel, '|' order by usable_rank) as fallback_channels,
        string_agg(recipient, '|' order by usable_rank) as fallback_recipients,
        string_agg(message_type, '|' order by usable_rank) as fallback_message_types
    from options
    where usable_rank > 1
    group by idempotency_key
),

sent_keys as (
    select distinct idempotency_key from ledger
    where is_sent
),

sent_steps as (
    select distinct
        lead_id,
        product_id,
        workflow,
        step
    from ledger
    where is_sent
),

gated as (
    select
        candidates.*,
        chosen.channel,
        chosen.recipient,
        chosen.message_type,
        coalesce(fallbacks.fallback_channels, '') as fallback_channels,
        coalesce(fallbacks.fallback_recipients, '') as fallback_recipients,
        coalesce(fallbacks.fallback_message_types, '') as fallback_message_types,
        case
            when not candidates.is_product_active then 'product_inactive'
            when holdouts.lead_id is not null then 'holdout'
            when
                sent_keys.idempotency_key is not null
                or (candidates.send_window_kind = 'once' and sent_steps.lead_id is not null)
                then 'already_sent'
            when chosen.channel is null then 'no_usable_channel'
        end as gate_reason
    from candidates
    left join chosen
        on candidates.idempotency_key = chosen.idempotency_key
    left join fallbacks
        on candidates.idempotency_key = fallbacks.idempotency_key
    left join sent_keys
        on candidates.idempotency_key = sent_keys.idempotency_key
    left join holdouts
        on candidates.lead_id = holdouts.lead_id and candidates.workflow = holdouts.workflow
    left join sent_steps
        on
            candidates.lead_id = sent_steps.lead_id
            and candidates.product_id = sent_steps.product_id
            and candidates.workflow = sent_steps.workflow
            and candidates.step = sent_steps.step
),

budgeted_candidates as (
    select * from gated
    where gate_reason is null
),

lead_periods as (
    select distinct
        lead_id,
        time_zone,
        due_local_date,
        due_local_week
    from budgeted_candidates
),

sent_messages as (
    select
        lead_periods.lead_id,
        lead_periods.due_local_date,
        lead_periods.due_local_week,
        cast({{ leadflow.to_local_time('ledger.updated_at', 'lead_periods.time_zone') }} as date)
            as sent_local_date
    from lead_periods
    inner join ledger
        on lead_periods.lead_id = ledger.lead_id
    where ledger.is_sent
),

sent_counts as (
    select
        lead_periods.lead_id,
        lead_periods.due_local_date,
        count(
            case when sent_messages.sent_local_date = lead_periods.due_local_date then 1 end
        ) as sent_that_day,
        count(
            case
                when
                    sent_messages.sent_local_date >= lead_periods.due_local_week
                    and sent_messages.sent_local_date < lead_periods.due_local_week + 7
                    then 1
            end
        ) as sent_that_week
    from lead_periods
    left join sent_messages
        on
            lead_periods.lead_id = sent_messages.lead_id
            and lead_periods.due_local_date = sent_messages.due_local_date
    group by lead_periods.lead_id, lead_periods.due_local_date
),

day_ranked as (
    select
        budgeted_candidates.*,
        cast(sent_counts.sent_that_day as integer) as sent_that_day,
        cast(sent_counts.sent_that_week as integer) as sent_that_week,
        cast(row_number() over (
            partition by budgeted_candidates.lead_id, budgeted_candidates.due_local_date
            order by
                budgeted_candidates.priority,
                budgeted_candidates.step_order,
                budgeted_candidates.due_at,
                budgeted_candidates.product_id
        ) as integer) as day_rank
    from budgeted_candidates
    inner join sent_counts
        on
            budgeted_candidates.lead_id = sent_counts.lead_id
            and budgeted_candidates.due_local_date = sent_counts.due_local_date
),

-- only messages within the daily cap compete for the week
week_ranked as (
    select
        *,
        cast(row_number() over (
            partition by lead_id, due_local_week
            order by due_local_date, priority, step_order, due_at, product_id
        ) as integer) as week_rank
    from day_ranked
    where sent_that_day + day_rank <= {{ var('activation_max_messages_per_day') }}
),

budget_decisions as (
    select
        day_ranked.idempotency_key,
        day_ranked.sent_that_day,
        day_ranked.sent_that_week,
        day_ranked.day_rank,
        week_ranked.week_rank,
        case
            when week_ranked.idempotency_key is null then 'daily_cap'
            when
                week_ranked.sent_that_week + week_ranked.week_rank
                > {{ var('activation_max_messages_per_week') }}
                then 'weekly_cap'
        end as budget_reason
    from day_ranked
    left join week_ranked
        on day_ranked.idempotency_key = week_ranked.idempotency_key
),

final as (
    select
        gated.idempotency_key,
        gated.lead_id,
        gated.product_id,
        gated.product_name,
        gated.workflow,
        gated.step,
        gated.channel,
        gated.recipient,
        gated.template,
        gated.message_type,
        gated.first_name,
        gated.score,
        gated.stage,
        gated.reason,
        gated.due_at,
        gated.window_ends_at,
        gated.eligible_at,
        gated.fallback_channels,
        gated.fallback_recipients,
        gated.fallback_message_types,
        gated.time_zone,
        gated.priority,
        gated.step_order,
        gated.send_window,
        gated.key_channel,
        gated.due_local_date,
        gated.due_local_week,
        budget_decisions.sent_that_day,
        budget_decisions.sent_that_week,
        budget_decisions.day_rank,
        budget_decisions.week_rank,
        coalesce(gated.gate_reason, budget_decisions.budget_reason, 'send') as decision,
        case coalesce(gated.gate_reason, budget_decisions.budget_reason)
            when 'product_inactive' then 'product ' || gated.product_id || ' is not active'
            when 'already_sent' then 'the ledger records this message as sent'
            when 'holdout' then 'control group of ' || gated.workflow || ' (int_holdout_assignments)'
            when 'no_usable_channel' then 'no channel of ' || gated.channels || ' may be used'
            when 'daily_cap'
                then cast(budget_decisions.sent_that_day as text) || ' sent and rank '
                    || cast(budget_decisions.day_rank as text) || ' by priority on '
                    || cast(gated.due_local_date as text) || ' (local) against a cap of '
                    || '{{ var("activation_max_messages_per_day") }} per day'
            when 'weekly_cap'
                then cast(budget_decisions.sent_that_week as text) || ' sent and rank '
                    || cast(budget_decisions.week_rank as text) || ' by priority in the week of '
                    || cast(gated.due_local_week as text) || ' (local) against a cap of '
                    || '{{ var("activation_max_messages_per_week") }} per week'
        end as decision_detail
    from gated
    left join budget_decisions
        on gated.idempotency_key = budget_decisions.idempotency_key
)

select * from final
