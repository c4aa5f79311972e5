{#
    Earned points per candidate event (LEAD_MODEL.md): one row per (event, scoring product). In order
    (occurred_at, event_id) per (lead, product, rule), an event earns the rule's points when the rule
    is repeatable or it is the first match, and it is among the first daily_cap earning candidates of
    its UTC date; otherwise it earns 0 and is still a signal for stages.

    Incremental: rebuilds only (lead, product) pairs whose scoring inputs changed (see
    int_lead_pair_fingerprints); the replace_by_key strategy replaces all of a pair's rows.
#}

{{ config(
    materialized='incremental',
    incremental_strategy='replace_by_key',
    unique_key=['lead_id', 'product_id'],
    on_schema_change='fail',
) }}

{%- set columns = [
    'event_id', 'lead_id', 'product_id', 'rule_id', 'event_product_id', 'event_type', 'occurred_at',
    'occurred_on', 'stream', 'event_source', 'feature_name', 'rule_points', 'is_repeatable', 'daily_cap',
    'occurrence_number', 'daily_occurrence_number', 'scoring_outcome', 'points', 'inputs_fingerprint',
] %}

with

candidate_events as (
    select * from {{ ref('int_lead_candidate_events') }}
),

fingerprints as (
    select * from {{ ref('int_lead_pair_fingerprints') }}
),

pairs_to_build as (
    {{ leadflow.lead_pairs_to_rebuild('fingerprints', 'scoring_fingerprint', 'occurrence_number = 1') }}
),

-- the UTC date only for the pairs being rebuilt: a time zone conversion per event is not free
pair_events as (
    select
        candidate_events.*,
        cast((candidate_events.occurred_at at time zone 'UTC') as date) as occurred_on
    from candidate_events
    inner join pairs_to_build
        on
            candidate_events.lead_id = pairs_to_build.lead_id
            and candidate_events.product_id = pairs_to_build.product_id
),

numbered as (
    select
        *,
        row_number() over (
            partition by lead_id, product_id, rule_id
            order by occurred_at, {{ leadflow.codepoint_order('event_id') }}
        ) as occurrence_number,
        row_number() over (
            partition by lead_id, product_id, rule_id, occurred_on
            order by occurred_at, {{ leadflow.codepoint_order('event_id') }}
        ) as daily_occurrence_number
    from pair_events
),

outcomes as (
    select
        *,
        case
            when not is_repeatable and occurrence_number > 1 then 'not_repeatable'
            when daily_occurrence_number > daily_cap then 'daily_cap'
            else 'scored'
        end as scoring_outcome
    from numbered
),

earned as (
    select
        outcomes.event_id,
        outcomes.lead_id,
        outcomes.product_id,
        outcomes.rule_id,
        outcomes.event_product_id,
        outcomes.event_type,
        outcomes.occurred_at,
        outcomes.occurred_on,
        outcomes.stream,
        outcomes.event_source,
        outcomes.feature_name,
        cast(outcomes.rule_points as integer) as rule_points,
        outcomes.is_repeatable,
        cast(outcomes.daily_cap as integer) as daily_cap,
        cast(outcomes.occurrence_number as integer) as occurrence_number,
        cast(outcomes.daily_occurrence_number as integer) as daily_occurrence_number,
        outcomes.scoring_outcome,
        cast(case when outcomes.scoring_outcome = 'scored' then outcomes.rule_points else 0 end as integer)
            as points,
        fingerprints.scoring_fingerprint as inputs_fingerprint
    from outcomes
    inner join fingerprints
        on outcomes.lead_id = fingerprints.lead_id and outcomes.product_id = fingerprints.product_id
),

final as (
    select * from earned
    {{ leadflow.lead_pair_placeholders('pairs_to_build', columns) }}
)

select * from final
