{#
    Every stage signal of a (lead, product) in processing order (LEAD_MODEL.md, Stages), numbered
    1..signal_count by (signal_at, kind_order, signal_id), with the scores at the signal's time:
      0 inactivity       e + dormant_after_days after an engagement signal e when the next one is
                         later than that, or there is none and that time is <= as_of
      1 engagement       each candidate event (earning or not)
      2 deal_created     3 deal_closed_won / deal_closed_lost     4 manual_override
    signal_class names what a signal can trigger (kind, whether the score reaches MQL / SQL, the
    requested stage): the stage walk looks its move up by class.

    Incremental: rebuilds only pairs whose stage inputs changed (int_lead_pair_fingerprints).
#}

{{ config(
    materialized='incremental',
    incremental_strategy='replace_by_key',
    unique_key=['lead_id', 'product_id'],
    on_schema_change='fail',
    indexes=leadflow.postgres_only([{'columns': ['lead_id', 'product_id', 'signal_index']}]),
) }}

{%- set columns = [
    'lead_id', 'product_id', 'signal_index', 'signal_count', 'signal_at', 'signal_kind', 'kind_order',
    'signal_id', 'triggering_event_id', 'requested_stage', 'engagement_score', 'fit_score', 'score',
    'reaches_mql', 'reaches_sql', 'signal_class', 'inputs_fingerprint',
] %}

with

engagement_events as (
    select * from {{ ref('fct_engagement_events') }}
),

deal_signals as (
    select * from {{ ref('int_lead_deal_signals') }}
),

override_signals as (
    select * from {{ ref('int_lead_override_signals') }}
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
    {{ leadflow.lead_pairs_to_rebuild('fingerprints', 'stage_fingerprint', 'signal_index = 1') }}
),

engagement as (
    select
        engagement_events.lead_id,
        engagement_events.product_id,
        engagement_events.occurred_at as signal_at,
        'engagement' as signal_kind,
        1 as kind_order,
        engagement_events.event_id as signal_id,
        engagement_events.event_id as triggering_event_id,
        cast(null as {{ dbt.type_string() }}) as requested_stage,
        engagement_events.points
    from engagement_events
    inner join pairs_to_build
        on
            engagement_events.lead_id = pairs_to_build.lead_id
            and engagement_events.product_id = pairs_to_build.product_id
),

engagement_gaps as (
    select
        *,
        lead(signal_at) over (
            partition by lead_id, product_id
            order by signal_at, {{ leadflow.codepoint_order('signal_id') }}
        ) as next_engagement_at,
        {{ leadflow.add_days('signal_at', var('dormant_after_days')) }} as inactive_at
    from engagement
),

inactivity as (
    select
        lead_id,
        product_id,
        inactive_at as signal_at,
        'inactivity' as signal_kind,
        0 as kind_order,
        signal_id,
        cast(null as {{ dbt.type_string() }}) as triggering_event_id,
        cast(null as {{ dbt.type_string() }}) as requested_stage,
        0 as points
    from engagement_gaps
    where
        next_engagement_at > inactive_at
        or (next_engagement_at is null and inactive_at <= {{ leadflow.as_of() }})
),

deals as (
    select
        deal_signals.lead_id,
        deal_signals.product_id,
        deal_signals.signal_at,
        deal_signals.signal_kind,
        case when deal_signals.signal_kind = 'deal_created' then 2 else 3 end as kind_order,
        deal_signals.deal_id as signal_id,
        deal_signals.deal_id as triggering_event_id,
        cast(null as {{ dbt.type_string() }}) as requested_stage,
        0 as points
    from deal_signals
    inner join pairs_to_build
        on
            deal_signals.lead_id = pairs_to_build.lead_id
            and deal_signals.product_id = pairs_to_build.product_id
),

overrides as (
    select
        override_signals.lead_id,
        override_signals.product_id,
        override_signals.signal_at,
        override_signals.signal_kind,
        4 as kind_order,
        override_signals.event_id as signal_id,
        override_signals.event_id as triggering_event_id,
        override_signals.requested_stage,
        0 as points
    from override_signals
    inner join pairs_to_build
        on
            override_signals.lead_id = pairs_to_build.lead_id
            and override_signals.product_id = pairs_to_build.product_id
),

signals as (
    select
        lead_id,
        product_id,
        signal_at,
        signal_kind,
        kind_order,
        signal_id,
        triggering_event_id,
        requested_stage,
        points
    from engagement
    union all
    select * from inactivity
    union all
    select * from deals
    union all
    select * from overrides
),

timed as (
    select
        signals.*,
        {{ leadflow.epoch_seconds('signals.signal_at') }} as signal_epoch,
        products.decay_half_life_days * 86400.0 as half_life_seconds,
        products.score_cap,
        products.mql_threshold,
        products.sql_threshold
    from signals
    inner join products
        on signals.product_id = products.product_id
),

anchored as (
    select
        *,
        min(signal_epoch) over (partition by lead_id, product_id) as anchor_epoch
    from timed
),

-- score(t) sums every earning event with occurred <= t: a range window takes same-instant peers
accumulated as (
    select
        *,
        sum(points * power(2.0, (signal_epoch - anchor_epoch) / half_life_seconds)) over (
            partition by lead_id, product_id
            order by signal_at
            range between unbounded preceding and current row
        ) as scaled_points_to_date,
        row_number() over (
            partition by lead_id, product_id
            order by signal_at, kind_order, {{ leadflow.codepoint_order('signal_id') }}
        ) as signal_index,
        count(*) over (partition by lead_id, product_id) as signal_count
    from anchored
),

scored as (
    select
        accumulated.*,
        least(
            greatest(
                accumulated.scaled_points_to_date * power(
                    0.5, (accumulated.signal_epoch - accumulated.anchor_epoch) / accumulated.half_life_seconds
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

classified as (
    select
        *,
        least(engagement_score + fit_score, score_cap) as score,
        signal_kind = 'engagement'
        and {{ leadflow.score_reaches('least(engagement_score + fit_score, score_cap)', 'mql_threshold') }}
            as reaches_mql,
        signal_kind = 'engagement'
        and {{ leadflow.score_reaches('least(engagement_score + fit_score, score_cap)', 'sql_threshold') }}
            as reaches_sql
    from scored
),

final_signals as (
    select
        classified.lead_id,
        classified.product_id,
        cast(classified.signal_index as integer) as signal_index,
        cast(classified.signal_count as integer) as signal_count,
        classified.signal_at,
        classified.signal_kind,
        classified.kind_order,
        classified.signal_id,
        classified.triggering_event_id,
        classified.requested_stage,
        cast(classified.engagement_score as double precision) as engagement_score,
        cast(classified.fit_score as double precision) as fit_score,
        cast(classified.score as double precision) as score,
        classified.reaches_mql,
        classified.reaches_sql,
        classified.signal_kind
        || case when classified.reaches_mql then '|mql' else '|' end
        || case when classified.reaches_sql then '|sql' else '|' end
        || '|' || coalesce(classified.requested_stage, '') as signal_class,
        fingerprints.stage_fingerprint as inputs_fingerprint
    from classified
    inner join fingerprints
        on classified.lead_id = fingerprints.lead_id and classified.product_id = fingerprints.product_id
),

final as (
    select * from final_signals
    {{ leadflow.lead_pair_placeholders('pairs_to_build', columns) }}
)

select * from final
