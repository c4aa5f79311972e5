{#
    Every landed event of every stream (product_events, manual, sendgrid, …), normalized in
    stg_events__event_lines. The lead model reads manual leads (`lead_upserted`), stage overrides
    (`stage_override`) and any stream's events a scoring rule names from its persisted copy,
    int_events_landed.
#}

with

lines as (
    select * from {{ ref('stg_events__event_lines') }}
),

-- dlt merges on event_id (insert-only); should an id ever arrive twice, keep the copy from the latest
-- landing line (the events loader takes dlt's Arrow path, which adds no _dlt_load_id / _dlt_id columns)
ranked as (
    select
        *,
        row_number() over (
            partition by event_id order by landing_file desc, line_number desc
        ) as load_rank
    from lines
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
        feature_name,
        properties_lead_id,
        properties_to_stage,
        properties_product_id
    from ranked
    where load_rank = 1
)

select * from final
