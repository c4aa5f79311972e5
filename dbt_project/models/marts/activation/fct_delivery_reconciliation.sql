{#
    Reconciliation of what activation handed over (the ledger) with what n8n reported back (delivery
    results), one row per idempotency key. A gap is data, not an error: `handed_over_unconfirmed` rows
    are messages handed over whose delivery result never arrived (lost report, n8n down after the
    answer); `confirmation_without_handover` rows are results for keys the ledger never marked sent.

    Population: ledger keys with status `sent` (handed over) or `failed` (the receiver answered
    failed), plus every key with at least one delivery result. Pending ledger rows without a result
    were never handed over and are left out.
#}

with

ledger as (
    select * from {{ ref('stg_activation__delivery_ledger') }}
    where idempotency_key is not null
),

results as (
    select * from {{ ref('stg_engagement__delivery_results') }}
    where idempotency_key is not null
),

ranked_results as (
    select
        *,
        row_number() over (
            partition by idempotency_key
            order by
                occurred_at desc,
                -- same instant: the furthest step of the funnel wins
                case event_type
                    when 'failed' then 6
                    when 'replied' then 5
                    when 'clicked' then 4
                    when 'opened' then 3
                    when 'delivered' then 2
                    when 'sent' then 1
                    else 0
                end desc,
                event_id desc
        ) as recency_rank,
        row_number() over (
            partition by idempotency_key
            order by
                case when event_type = 'failed' then 1 else 0 end,
                occurred_at,
                event_id
        ) as confirmation_rank
    from results
),

result_keys as (
    select
        idempotency_key,
        max(lead_id) as lead_id,
        max(product_id) as product_id,
        min(case when event_type <> 'failed' then occurred_at end) as first_confirmed_at
    from results
    group by idempotency_key
),

last_event as (
    select
        idempotency_key,
        event_type as last_event_type
    from ranked_results
    where recency_rank = 1
),

first_confirmation as (
    select
        idempotency_key,
        channel as confirmed_channel
    from ranked_results
    where confirmation_rank = 1 and event_type <> 'failed'
),

handed_over as (
    select
        idempotency_key,
        lead_id,
        product_id,
        workflow,
        step,
        channel,
        status,
        case when is_sent then updated_at end as handed_over_at,
        is_sent
    from ledger
    where status in ('sent', 'failed')
),

all_keys as (
    select idempotency_key from handed_over
    union
    select idempotency_key from result_keys
),

joined as (
    select
        all_keys.idempotency_key,
        coalesce(handed_over.lead_id, result_keys.lead_id) as lead_id,
        coalesce(handed_over.product_id, result_keys.product_id) as product_id,
        handed_over.workflow,
        handed_over.step,
        handed_over.channel as channel_handed_over,
        handed_over.handed_over_at,
        handed_over.status as ledger_status,
        coalesce(handed_over.is_sent, false) as is_handed_over,
        result_keys.first_confirmed_at,
        last_event.last_event_type,
        first_confirmation.confirmed_channel,
        result_keys.idempotency_key is not null as has_result
    from all_keys
    left join handed_over on all_keys.idempotency_key = handed_over.idempotency_key
    left join result_keys on all_keys.idempotency_key = result_keys.idempotency_key
    left join last_event on all_keys.idempotency_key = last_event.idempotency_key
    left join first_confirmation on all_keys.idempotency_key = first_confirmation.idempotency_key
),

final as (
    select
        idempotency_key,
        lead_id,
        product_id,
        workflow,
        step,
        channel_handed_over,
        handed_over_at,
        ledger_status,
        first_confirmed_at,
        last_event_type,
        confirmed_channel,
        case
            when last_event_type = 'failed' then 'failed'
            when not has_result and ledger_status = 'failed' then 'failed'
            when has_result and not is_handed_over then 'confirmation_without_handover'
            when has_result then 'confirmed'
            else 'handed_over_unconfirmed'
        end as reconciliation_status
    from joined
)

select * from final
