{#
    Every landed line of every stream, normalized: one row per raw row (an event id loaded twice
    gives two rows). stg_events__events and stg_events__product_events keep one row per event id
    from here; int_events_landed reads it to find the lines a build has not seen yet.
#}

with

source as (
    select * from {{ source('events', 'events') }}
),

final as (
    select
        cast(event_id as text) as event_id,
        stream,
        lower({{ leadflow.clean_text('event_type') }}) as event_type,
        occurred_at,
        lower({{ leadflow.clean_text('product_id') }}) as product_id,
        {{ leadflow.normalize_email('email') }} as email,
        email as email_raw,
        {{ leadflow.normalize_phone_e164('phone') }} as phone_e164,
        phone as phone_raw,
        {{ leadflow.clean_text('cast(user_id as text)') }} as user_id,
        coalesce({{ leadflow.clean_text('source') }}, stream) as event_source,
        cast(properties as text) as properties,
        {{ leadflow.json_text_field('properties', 'feature') }} as feature_name,
        {{ leadflow.json_text_field('properties', 'lead_id') }} as properties_lead_id,
        lower({{ leadflow.clean_text(leadflow.json_text_field('properties', 'to_stage')) }})
            as properties_to_stage,
        lower({{ leadflow.clean_text(leadflow.json_text_field('properties', 'product_id')) }})
            as properties_product_id,
        landing_file,
        cast(line_number as bigint) as line_number
    from source
)

select * from final
