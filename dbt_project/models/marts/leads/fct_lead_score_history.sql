{#
    The score of a (lead, product) right after each of its candidate events (LEAD_MODEL.md):
    engagement_score(t) = clamp(sum of earned points x 0.5 ^ ((t - occurred) / half-life days), 0, cap)
    over earning events with occurred <= t (all events at the same instant count), fit added, capped.

    The decayed sum is a running window sum: points x 2^((occurred - t0) / half-life) summed up to t,
    times 0.5^((t - t0) / half-life), with t0 the pair's first event (keeps the exponents small).

    Incremental like fct_engagement_events: only pairs whose scoring inputs changed are rebuilt.
#}

{{ config(
    materialized='incremental',
    incremental_strategy='replace_by_key',
    unique_key=['lead_id', 'product_id'],
    on_schema_change='fail',
) }}

{%- set columns = [
    'lead_id', 'product_id', 'event_id', 'occurred_at', 'points', 'engagement_score', 'fit_score', 'score',
    'score_cap', 'is_mql', 'is_sql', 'inputs_fingerprint',
] %}

with

engagement_events as (
    select * from {{ ref('fct_engagement_events') }}
),

fingerprints as (
    select * from {{ ref('int_lead_pair_fingerprints') }}
),

fit_scores as (
    select * from {{ ref('int_lead_fit_scores') }}
),

products as (
    select * from {{ ref('products') }}
),

pairs_to_build as (
    {{ leadflow.lead_pairs_to_rebuild('fingerprints', 'scoring_fingerprint') }}
),

pair_events as (
    select
        engagement_events.lead_id,
        engagement_events.product_id,
        engagement_events.event_id,
        engagement_events.occurred_at,
        engagement_events.points,
        {{ leadflow.epoch_seconds('engagement_events.occurred_at') }} as occurred_epoch,
        products.decay_half_life_days * 86400.0 as half_life_seconds,
        products.score_cap,
        products.mql_threshold,
        products.sql_threshold
    from engagement_events
    inner join pairs_to_build
        on
            engagement_events.lead_id = pairs_to_build.lead_id
            and engagement_events.product_id = pairs_to_build.product_id
    inner join products
        on engagement_events.product_id = products.product_id
),

anchored as (
    select
        *,
        min(occurred_epoch) over (partition by lead_id, product_id) as anchor_epoch
    from pair_events
),

accumulated as (
    select
        *,
        sum(points * power(2.0, (occurred_epoch - anchor_epoch) / half_life_seconds)) over (
            partition by lead_id, product_id
            order by occurred_at
            range between unbounded preceding and current row
        ) as scaled_points_to_date
    from anchored
),

scored as (
    select
        accumulated.*,
        least(
            greatest(
                accumulated.scaled_points_to_date * power(
                    0.5,
                    (accumulated.occurred_epoch - accumulated.anchor_epoch) / accumulated.half_life_seconds
                ),
                0
            ),
            accumulated.score_cap
        ) as engagement_score,
        coalesce(fit_scores.fit_score, 0) as fit_score
    from accumulated
    left join fit_scores
        on accumulated.lead_id = fit_scores.lead_id and accumulated.product_id = fit_scores.product_id
),

history as (
    select
        scored.lead_id,
        scored.product_id,
        scored.event_id,
        scored.occurred_at,
        scored.points,
        cast(scored.engagement_score as double precision) as engagement_score,
        cast(scored.fit_score as double precision) as fit_score,
        cast(least(scored.engagement_score + scored.fit_score, scored.score_cap) as double precision)
            as score,
        scored.score_cap,
        {{ leadflow.score_reaches(
            'least(scored.engagement_score + scored.fit_score, scored.score_cap)', 'scored.mql_threshold'
        ) }} as is_mql,
        {{ leadflow.score_reaches(
            'least(scored.engagement_score + scored.fit_score, scored.score_cap)', 'scored.sql_threshold'
        ) }} as is_sql,
        fingerprints.scoring_fingerprint as inputs_fingerprint
    from scored
    inner join fingerprints
        on scored.lead_id = fingerprints.lead_id and scored.product_id = fingerprints.product_id
),

final as (
    select * from history
    {{ leadflow.lead_pair_placeholders('pairs_to_build', columns) }}
)

select * from final
