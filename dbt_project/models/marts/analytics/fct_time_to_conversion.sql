{#
    How long conversions take, per product and first-touch channel (plus channel `all` per product),
    measured from the lead's first touch and from its qualification (MQL or SQL), in fractional days:
    count, median (p50), p75, p90 (continuous percentiles, linear interpolation; the same numbers on
    DuckDB and PostgreSQL through the percentile_cont macro), mean, min and max. One conversion of a
    deal with two leads counts once per lead (it is the leads' journeys that are timed).
#}

with

conversions as (
    select * from {{ ref('fct_conversions') }}
),

durations as (
    select
        product_id,
        workflow,
        first_touch_channel as channel,
        'first_touch' as measured_from,
        days_from_first_touch as days_to_conversion
    from conversions
    where days_from_first_touch is not null
    union all
    select
        product_id,
        workflow,
        first_touch_channel as channel,
        'mql' as measured_from,
        days_from_mql as days_to_conversion
    from conversions
    where days_from_mql is not null
),

with_all_channels as (
    select * from durations
    union all
    select
        product_id,
        workflow,
        'all' as channel,
        measured_from,
        days_to_conversion
    from durations
),

final as (
    select
        product_id,
        workflow,
        channel,
        measured_from,
        count(*) as conversions,
        cast({{ leadflow.percentile_cont('days_to_conversion', 0.5) }} as double precision) as median_days,
        cast({{ leadflow.percentile_cont('days_to_conversion', 0.75) }} as double precision) as p75_days,
        cast({{ leadflow.percentile_cont('days_to_conversion', 0.9) }} as double precision) as p90_days,
        cast(avg(days_to_conversion) as double precision) as mean_days,
        cast(min(days_to_conversion) as double precision) as min_days,
        cast(max(days_to_conversion) as double precision) as max_days
    from with_all_channels
    group by product_id, workflow, channel, measured_from
)

select * from final
