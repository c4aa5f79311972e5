{#
    Manual stage overrides per (lead, product) up to as_of: `stage_override` events of any stream
    (the Lead Tracker API writes them to `manual`) with the requested stage in properties.to_stage
    and the product in product_id (else properties.product_id).
#}

with

events as (
    select * from {{ ref('int_events_attributed') }}
),

products as (
    select * from {{ ref('products') }}
),

overrides as (
    select
        lead_id,
        coalesce(product_id, properties_product_id) as product_id,
        event_id,
        occurred_at as signal_at,
        properties_to_stage as requested_stage
    from events
    where event_type = 'stage_override' and lead_id is not null
),

final as (
    select
        overrides.lead_id,
        overrides.product_id,
        overrides.event_id,
        'manual_override' as signal_kind,
        overrides.signal_at,
        overrides.requested_stage
    from overrides
    inner join products
        on overrides.product_id = products.product_id
)

select * from final
