{#
    Delivery results n8n reports back (stream `delivery`: `sent`, `delivered`, `opened`, `clicked`,
    `replied`, `failed`), one row per event, keyed to the send-list message by
    properties.idempotency_key.
#}

with

source as (
    select * from {{ source('events', 'events') }}
),

delivery as (
    select * from source
    where stream = 'delivery'
),

renamed as (
    select
        cast(event_id as text) as event_id,
        lower({{ leadflow.clean_text('event_type') }}) as event_type,
        occurred_at,
        lower({{ leadflow.clean_text('product_id') }}) as product_id,
        cast(properties as text) as properties,
        landing_file,
        cast(line_number as bigint) as line_number
    from delivery
),

ranked as (
    select
        *,
        row_number() over (
            partition by event_id order by landing_file desc, line_number desc
        ) as load_rank
    from renamed
),

final as (
    select
        event_id,
        event_type,
        occurred_at,
        product_id,
        {{ leadflow.clean_text(leadflow.json_text_field('properties', 'idempotency_key')) }}
            as idempotency_key,
        {{ leadflow.clean_text(leadflow.json_text_field('properties', 'lead_id')) }} as lead_id,
        lower({{ leadflow.clean_text(leadflow.json_text_field('properties', 'channel')) }}) as channel,
        {{ leadflow.clean_text(leadflow.json_text_field('properties', 'provider_message_id')) }}
            as provider_message_id,
        {{ leadflow.clean_text(leadflow.json_text_field('properties', 'recipient')) }} as recipient,
        {{ leadflow.clean_text(leadflow.json_text_field('properties', 'reason')) }} as failure_reason,
        {{ leadflow.clean_text(leadflow.json_text_field('properties', 'batch_id')) }} as batch_id,
        properties
    from ranked
    where load_rank = 1
)

select * from final
