{#
    One row per (lead, product) with at least one candidate event: the scores at as_of
    (LEAD_MODEL.md). Decay moves every score with as_of, so this is a full recompute on every build,
    kept cheap by reading the incremental fct_engagement_events / fct_lead_score_history.
#}

with

engagement_events as (
    select * from {{ ref('fct_engagement_events') }}
),

score_history as (
    select * from {{ ref('fct_lead_score_history') }}
),

fit_scores as (
    select * from {{ ref('int_lead_fit_scores') }}
),

products as (
    select * from {{ ref('products') }}
),

decayed as (
    select
        engagement_events.lead_id,
        engagement_events.product_id,
        products.score_cap,
        products.mql_threshold,
        products.sql_threshold,
        sum(
            engagement_events.points * power(
                0.5,
                {{ leadflow.days_between('engagement_events.occurred_at', leadflow.as_of()) }}
                / products.decay_half_life_days
            )
        ) as decayed_points,
        count(*) as event_count,
        sum(case when engagement_events.scoring_outcome = 'scored' then 1 else 0 end) as scored_event_count,
        min(engagement_events.occurred_at) as first_event_at,
        max(engagement_events.occurred_at) as last_event_at
    from engagement_events
    inner join products
        on engagement_events.product_id = products.product_id
    group by
        engagement_events.lead_id,
        engagement_events.product_id,
        products.score_cap,
        products.mql_threshold,
        products.sql_threshold
),

crossings as (
    select
        lead_id,
        product_id,
        min(case when is_mql then occurred_at end) as mql_reached_at,
        min(case when is_sql then occurred_at end) as sql_reached_at
    from score_history
    group by lead_id, product_id
),

scored as (
    select
        decayed.*,
        cast(least(greatest(decayed.decayed_points, 0), decayed.score_cap) as double precision)
            as engagement_score,
        cast(coalesce(fit_scores.fit_score, 0) as double precision) as fit_score
    from decayed
    left join fit_scores
        on decayed.lead_id = fit_scores.lead_id and decayed.product_id = fit_scores.product_id
),

final as (
    select
        scored.lead_id,
        scored.product_id,
        scored.engagement_score,
        scored.fit_score,
        cast(least(scored.engagement_score + scored.fit_score, scored.score_cap) as double precision)
            as score,
        scored.score_cap,
        scored.mql_threshold,
        scored.sql_threshold,
        {{ leadflow.score_reaches(
            'least(scored.engagement_score + scored.fit_score, scored.score_cap)', 'scored.mql_threshold'
        ) }} as is_mql,
        {{ leadflow.score_reaches(
            'least(scored.engagement_score + scored.fit_score, scored.score_cap)', 'scored.sql_threshold'
        ) }} as is_sql,
        crossings.mql_reached_at,
        crossings.sql_reached_at,
        cast(scored.event_count as integer) as event_count,
        cast(scored.scored_event_count as integer) as scored_event_count,
        scored.first_event_at,
        scored.last_event_at,
        {{ leadflow.as_of() }} as as_of
    from scored
    left join crossings
        on scored.lead_id = crossings.lead_id and scored.product_id = crossings.product_id
)

select * from final
