{#
    Product usage events (stream `product_events`), one row per event id: normalized in
    stg_events__event_lines, the copy from the latest landing line kept (same rule as
    stg_events__events, applied within the stream).
#}

with

lines as (
    select * from {{ ref('stg_events__event_lines') }}
    where stream = 'product_events'
),

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
        feature_name,
        landing_file,
        line_number
    from ranked
    where load_rank = 1
)

select * from final
