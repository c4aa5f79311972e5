{#
    Every landed event once (the copy from its latest landing line, as stg_events__events keeps),
    normalized, with the product or manual identity it is itself (own_identity_key), whatever its
    occurred_at: the lead model reads events from here instead of normalizing every raw row again.

    Incremental: takes only the landing lines it has not taken yet (a new event id, or a later line of
    a known one, which replaces the event: is_replacement) and stamps the rows it writes with the
    build's start (landed_at), which is how int_lead_identities and int_events_attributed find them. raw_events.events is insert-only (dlt), so lines never vanish;
    after deleting raw events, run with --full-refresh.
#}

{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='event_id',
    on_schema_change='fail',
) }}

with

lines as (
    select * from {{ ref('stg_events__event_lines') }}
),

new_lines as (
    select
        lines.*,
        {%- if is_incremental() %}
            landed.event_id is not null as is_replacement
        {%- else %}
            false as is_replacement
        {%- endif %}
    from lines
    {%- if is_incremental() %}
        left join {{ this }} as landed
            on lines.event_id = landed.event_id
    where
        landed.event_id is null
        or lines.landing_file > landed.landing_file
        or (lines.landing_file = landed.landing_file and lines.line_number > landed.line_number)
    {%- endif %}
),

ranked as (
    select
        *,
        row_number() over (
            partition by event_id order by landing_file desc, line_number desc
        ) as load_rank
    from new_lines
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
        feature_name,
        properties_lead_id,
        properties_to_stage,
        properties_product_id,
        case
            when stream = 'product_events'
                then {{ leadflow.product_identity_key('user_id', 'email', 'phone_e164') }}
            when {{ leadflow.is_manual_lead_event() }}
                then {{ leadflow.manual_identity_key('email', 'phone_e164') }}
        end as own_identity_key,
        landing_file,
        line_number,
        is_replacement,
        {{ leadflow.build_started_at() }} as landed_at
    from ranked
    where load_rank = 1
)

select * from final
