with

source as (
    select * from {{ source('events', 'events') }}
),

product_events as (
    select * from source
    where stream = 'product_events'
),

renamed as (
    select
        cast(event_id as text) as event_id,
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
        landing_file,
        cast(line_number as bigint) as line_number
    from product_events
),

-- dlt merges on event_id; should an id ever arrive twice, keep the copy from the latest landing line
-- (the events loader takes dlt's Arrow path, which adds no _dlt_load_id / _dlt_id columns)
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
        email,
        email_raw,
        phone_e164,
        phone_raw,
        user_id,
        event_source,
        properties,
        {{ leadflow.json_text_field('properties', 'feature') }} as feature_name,
        landing_file,
        line_number
    from ranked
    where load_rank = 1
)

select * from final
