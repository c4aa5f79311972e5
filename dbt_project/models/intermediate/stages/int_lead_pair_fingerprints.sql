{#
    One row per (lead, product) with any signal, with md5 fingerprints of everything the pair's rows
    in the incremental models depend on. An incremental build rebuilds exactly the pairs whose
    fingerprint differs from the one stored on their rows (macros/lead_model.sql,
    lead_pairs_to_rebuild), which catches new and late events, events that moved to another lead,
    CRM fit changes, deal changes, overrides, seed edits, and an `as_of` that crossed a pair's
    inactivity time (events and deals after as_of are absent from the inputs by construction).

    - scoring_fingerprint: candidate events (id, time, rule), fit score, rules_version,
      score_compare_epsilon; null for a pair without candidate events (only deals or overrides),
      which the scoring models hold no rows for.
    - stage_fingerprint: scoring_fingerprint + deals + overrides + whether the last engagement's
      inactivity time has passed at as_of + dormant_after_days.
#}

-- a table: read by several models of one build (and by every incremental model's change detection),
-- so it is computed once per build instead of once per reader
{{ config(materialized='table') }}

with

candidate_events as (
    select * from {{ ref('int_lead_candidate_events') }}
),

deal_signals as (
    select * from {{ ref('int_lead_deal_signals') }}
),

override_signals as (
    select * from {{ ref('int_lead_override_signals') }}
),

fit_scores as (
    select * from {{ ref('int_lead_fit_scores') }}
),

rules_version as (
    select * from {{ ref('int_lead_rules_version') }}
),

{%- set text = dbt.type_string() %}

-- an order-free digest (sum of 64-bit row hashes, and the count): no sort of the candidate events
-- (an ordered string_agg over 2M events cost 7 s of CPU on DuckDB, the sum about 1 s)
event_inputs as (
    select
        lead_id,
        product_id,
        cast(count(*) as {{ text }}) || ':' || cast(sum({{ leadflow.text_hash64(
            "event_id || ':' || cast(" ~ leadflow.epoch_seconds('occurred_at') ~ " as " ~ text ~ ") || ':' || rule_id"
        ) }}) as {{ text }}) as events_digest,
        max(occurred_at) as last_engagement_at
    from candidate_events
    group by lead_id, product_id
),

other_signals as (
    select
        lead_id,
        product_id,
        deal_id || ':' || signal_kind || ':' || cast({{ leadflow.epoch_seconds('signal_at') }} as {{ text }})
            as signal_text
    from deal_signals
    union all
    select
        lead_id,
        product_id,
        event_id || ':' || signal_kind || ':' || cast({{ leadflow.epoch_seconds('signal_at') }} as {{ text }})
        || ':' || coalesce(requested_stage, '') as signal_text
    from override_signals
),

other_inputs as (
    select
        lead_id,
        product_id,
        {{ leadflow.md5_hex(
            "string_agg(signal_text, ',' order by " ~ leadflow.codepoint_order('signal_text') ~ ")"
        ) }} as signals_digest
    from other_signals
    group by lead_id, product_id
),

pairs as (
    select
        lead_id,
        product_id
    from event_inputs
    union
    select
        lead_id,
        product_id
    from other_inputs
),

combined as (
    select
        pairs.lead_id,
        pairs.product_id,
        event_inputs.lead_id is not null as has_candidate_events,
        coalesce(event_inputs.events_digest, '') || '|'
        || coalesce(cast(fit_scores.fit_score as {{ text }}), '0') || '|'
        || rules_version.rules_version || '|' || '{{ var("score_compare_epsilon") }}' as scoring_text,
        coalesce(other_inputs.signals_digest, '') || '|'
        || cast({{ var('dormant_after_days') }} as {{ text }}) || '|'
        || case
            when
                {{ leadflow.add_days('event_inputs.last_engagement_at', var('dormant_after_days')) }}
                <= {{ leadflow.as_of() }}
                then 'inactive'
            else 'active'
        end as stage_text
    from pairs
    cross join rules_version
    left join event_inputs
        on pairs.lead_id = event_inputs.lead_id and pairs.product_id = event_inputs.product_id
    left join other_inputs
        on pairs.lead_id = other_inputs.lead_id and pairs.product_id = other_inputs.product_id
    left join fit_scores
        on pairs.lead_id = fit_scores.lead_id and pairs.product_id = fit_scores.product_id
),

final as (
    select
        lead_id,
        product_id,
        case when has_candidate_events then {{ leadflow.md5_hex('scoring_text') }} end as scoring_fingerprint,
        {{ leadflow.md5_hex("scoring_text || '#' || stage_text") }} as stage_fingerprint
    from combined
)

select * from final
