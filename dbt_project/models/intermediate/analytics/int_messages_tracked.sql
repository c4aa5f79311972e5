{#
    One row per nurture message (idempotency_key) that was handed over, with what became of it.
    A message exists when the ledger holds it as `sent` or n8n reported any delivery result for it
    (stream `delivery`), or the ledger holds it as `failed`; SendGrid Event Webhook events carrying the key (custom_args) add email
    opens / clicks / deliveries. Only rows at or before as_of count.
    - sent_at: the earliest of the ledger's accepted time (updated_at of a `sent` row) and the first
      non-failed delivery result.
    - outcome flags follow the message funnel: delivered = any of delivered / opened / clicked /
      replied (an open proves delivery even when the receipt is missing); opened = opened or clicked
      (a click proves the open even when the tracking pixel was blocked); clicked; replied; failed =
      a `failed` result or ledger status and never delivered. is_sent = ledger `sent` or a non-failed
      delivery result; sent_at is null for a message that was never sent.
#}

with

-- `sent` rows (final) and `failed` rows (handed over, the receiver reported a failure)
ledger as (
    select * from {{ ref('stg_activation__delivery_ledger') }}
    where status in ('sent', 'failed') and updated_at <= {{ leadflow.as_of() }}
),

delivery_results as (
    select * from {{ ref('stg_engagement__delivery_results') }}
    where occurred_at <= {{ leadflow.as_of() }}
),

email_events as (
    select * from {{ ref('stg_engagement__email_events') }}
    where idempotency_key is not null and occurred_at <= {{ leadflow.as_of() }}
),

products as (
    select * from {{ ref('products') }}
),

workflow_steps as (
    select * from {{ ref('workflow_steps') }}
),

outcome_events as (
    select
        idempotency_key,
        event_type as outcome,
        occurred_at,
        lead_id,
        product_id,
        channel
    from delivery_results
    union all
    select
        idempotency_key,
        case event_type
            when 'email_delivered' then 'delivered'
            when 'email_open' then 'opened'
            when 'email_click' then 'clicked'
        end as outcome,
        occurred_at,
        cast(null as {{ dbt.type_string() }}) as lead_id,
        product_id,
        'email' as channel
    from email_events
    where event_type in ('email_delivered', 'email_open', 'email_click')
),

outcomes as (
    select
        idempotency_key,
        min(lead_id) as lead_id,
        min(product_id) as product_id,
        min(channel) as channel,
        min(case when outcome <> 'failed' then occurred_at end) as first_result_at,
        max(case when outcome in ('sent', 'delivered', 'opened', 'clicked', 'replied') then 1 else 0 end)
            as has_sent,
        max(case when outcome in ('delivered', 'opened', 'clicked', 'replied') then 1 else 0 end)
            as has_delivered,
        max(case when outcome in ('opened', 'clicked') then 1 else 0 end) as has_opened,
        max(case when outcome = 'clicked' then 1 else 0 end) as has_clicked,
        max(case when outcome = 'replied' then 1 else 0 end) as has_replied,
        max(case when outcome = 'failed' then 1 else 0 end) as has_failed
    from outcome_events
    group by idempotency_key
),

-- delivery results of keys never handed over by this ledger (e.g. SendGrid events of other mail) are
-- only kept when n8n reported them (has a result of its own)
messages as (
    select
        coalesce(ledger.idempotency_key, outcomes.idempotency_key) as idempotency_key,
        coalesce(ledger.lead_id, outcomes.lead_id) as lead_id,
        coalesce(ledger.product_id, outcomes.product_id) as product_id,
        ledger.workflow,
        ledger.step,
        coalesce(ledger.channel_used, outcomes.channel, ledger.channel) as channel,
        case
            when not coalesce(ledger.is_sent, false) then outcomes.first_result_at
            when outcomes.first_result_at is null then ledger.updated_at
            when outcomes.first_result_at < ledger.updated_at then outcomes.first_result_at
            else ledger.updated_at
        end as sent_at,
        coalesce(ledger.is_sent, false) or coalesce(outcomes.has_sent, 0) = 1 as is_sent,
        coalesce(outcomes.has_delivered, 0) = 1 as is_delivered,
        coalesce(outcomes.has_opened, 0) = 1 as is_opened,
        coalesce(outcomes.has_clicked, 0) = 1 as is_clicked,
        coalesce(outcomes.has_replied, 0) = 1 as is_replied,
        (coalesce(outcomes.has_failed, 0) = 1 or coalesce(ledger.status = 'failed', false))
        and coalesce(outcomes.has_delivered, 0) = 0 as is_failed
    from ledger
    full outer join outcomes
        on ledger.idempotency_key = outcomes.idempotency_key
    where ledger.idempotency_key is not null or outcomes.has_sent = 1 or outcomes.has_failed = 1
),

final as (
    select
        messages.idempotency_key,
        messages.lead_id,
        messages.product_id,
        coalesce(messages.workflow, products.nurture_workflow) as workflow,
        messages.step,
        coalesce(workflow_steps.template, messages.step, 'unknown') as template,
        coalesce(messages.channel, 'unknown') as channel,
        messages.sent_at,
        messages.is_sent,
        messages.is_delivered,
        messages.is_opened,
        messages.is_clicked,
        messages.is_replied,
        messages.is_failed
    from messages
    left join products
        on messages.product_id = products.product_id
    left join workflow_steps
        on messages.step = workflow_steps.step
)

select * from final
