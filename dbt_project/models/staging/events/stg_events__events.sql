{#
    Every landed event of every stream (product_events, manual, sendgrid, …), normalized like
    stg_events__product_events. The lead model reads manual leads (`lead_upserted`), stage overrides
    (`stage_override`) and any stream's events a scoring rule names from here.
#}

with

source as (
    select * from {{ source('events', 'events') }}
),

renamed as (
    select
        cast(event_id as text) as event_id,
        stream,
        lower({{ leadflow.clean_text('event_type') }}) as event_type,
        occurred_at,
        lower({{ leadflow.clean_text('product_id') }}) as product_id,
        {{ leadflow.normalize_email('email') }} as email,
        {{ leadflow.normalize_phone_e164('phone') }} as phone_e164,
        {{ leadflow.clean_text('cast(user_id as text)') }} as user_id,
        coalesce({{ leadflow.clean_text('source') }}, stream) as event_source,
        cast(properties as text) as properties,
        landing_file,
        cast(line_number as bigint) as line_number
    from source
),

-- same rule as stg_events__product_events: one copy per event_id, from the latest landing line
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
        stream,
        event_type,
        occurred_at,
        product_id,
        email,
        phone_e164,
        user_id,
        event_source,
        properties,
        {{ leadflow.json_text_field('properties', 'feature') }} as feature_name,
        {{ leadflow.json_text_field('properties', 'lead_id') }} as properties_lead_id,
        lower({{ leadflow.clean_text(leadflow.json_text_field('properties', 'to_stage')) }})
            as properties_to_stage,
        lower({{ leadflow.clean_text(leadflow.json_text_field('properties', 'product_id')) }})
            as properties_product_id
    from ranked
    where load_rank = 1
)

select * from final
