{#
    The audit trail of the lead lifecycle (LEAD_MODEL.md, Stages): every stage change of every
    (lead, product), numbered by transition_seq. A pair enters `new` at its first signal (rule
    `initial`); at each signal, in processing order, the stage rule with the lowest priority whose
    from_stage is the current stage and whose trigger holds moves the pair, and the lookup repeats
    (at most 9 moves per signal).

    Deterministic state machine in SQL:
    1. class_moves: per (signal class, from_stage) the chosen rule. A trigger holds at a signal by
       the signal's class alone (kind, reaches MQL / SQL, requested stage), so the lookup is tiny.
    2. walk: a recursive CTE whose frontier is one row per pair (signal_index, chain_step, stage):
       a move stays on the signal (chain_step + 1), no move advances to the next signal.

    Incremental: rebuilds only pairs whose stage inputs changed (int_lead_pair_fingerprints).
#}

{{ config(
    materialized='incremental',
    incremental_strategy='replace_by_key',
    unique_key=['lead_id', 'product_id'],
    on_schema_change='fail',
) }}

{%- set columns = [
    'lead_id', 'product_id', 'transition_seq', 'from_stage', 'to_stage', 'transitioned_at', 'rule_id',
    'trigger', 'engagement_score', 'fit_score', 'score', 'triggering_event_id', 'rules_version',
    'signal_index', 'signal_kind', 'inputs_fingerprint',
] %}

{%- set max_moves_per_signal = 9 %}

with recursive

stage_signals as (
    select * from {{ ref('int_lead_stage_signals') }}
),

stage_rules as (
    select * from {{ ref('stage_rules') }}
),

fingerprints as (
    select * from {{ ref('int_lead_pair_fingerprints') }}
),

rules_version as (
    select * from {{ ref('int_lead_rules_version') }}
),

pairs_to_build as (
    {{ leadflow.lead_pairs_to_rebuild('fingerprints', 'stage_fingerprint', 'transition_seq = 1') }}
),

-- materialized: the walk below reads it at every step (DuckDB would otherwise recompute the pairs
-- to rebuild each time)
signals as materialized (
    select stage_signals.*
    from stage_signals
    inner join pairs_to_build
        on
            stage_signals.lead_id = pairs_to_build.lead_id
            and stage_signals.product_id = pairs_to_build.product_id
),

signal_classes as (
    select distinct
        signal_class,
        signal_kind,
        reaches_mql,
        reaches_sql,
        requested_stage
    from signals
),

applicable_rules as (
    select
        signal_classes.signal_class,
        stage_rules.from_stage,
        stage_rules.to_stage,
        stage_rules.rule_id,
        stage_rules.trigger,
        row_number() over (
            partition by signal_classes.signal_class, stage_rules.from_stage
            order by stage_rules.priority, {{ leadflow.codepoint_order('stage_rules.rule_id') }}
        ) as choice_rank
    from signal_classes
    inner join stage_rules
        on
            case stage_rules.trigger
                when 'first_engagement' then signal_classes.signal_kind = 'engagement'
                when 'reengaged' then signal_classes.signal_kind = 'engagement'
                when 'score_reached_mql' then signal_classes.reaches_mql
                when 'score_reached_sql' then signal_classes.reaches_sql
                when 'manual_override'
                    then
                        signal_classes.signal_kind = 'manual_override'
                        and signal_classes.requested_stage = stage_rules.to_stage
                else signal_classes.signal_kind = stage_rules.trigger
            end
),

-- materialized: PostgreSQL would otherwise inline this lookup into the recursive step and recompute
-- its window once per frontier row
class_moves as materialized (
    select
        signal_class,
        from_stage,
        to_stage,
        rule_id,
        trigger
    from applicable_rules
    where choice_rank = 1
),

walk as (
    select
        lead_id,
        product_id,
        signal_index,
        signal_count,
        0 as chain_step,
        cast('new' as {{ dbt.type_string() }}) as stage,
        cast(null as {{ dbt.type_string() }}) as from_stage,
        cast('initial' as {{ dbt.type_string() }}) as rule_id,
        cast(null as {{ dbt.type_string() }}) as trigger
    from signals
    where signal_index = 1

    union all

    select
        walk.lead_id,
        walk.product_id,
        case when class_moves.to_stage is null then walk.signal_index + 1 else walk.signal_index end
            as signal_index,
        walk.signal_count,
        case when class_moves.to_stage is null then 0 else walk.chain_step + 1 end as chain_step,
        coalesce(class_moves.to_stage, walk.stage) as stage,
        case when class_moves.to_stage is not null then walk.stage end as from_stage,
        class_moves.rule_id,
        class_moves.trigger
    -- PostgreSQL: the table, looked up by index (lead_id, product_id, signal_index) per frontier row;
    -- DuckDB: the `signals` CTE, hashed per step, which holds only the pairs being rebuilt
    from walk
    inner join {{ leadflow.stage_walk_signals(ref('int_lead_stage_signals'), 'signals') }} as walk_signals
        on
            walk.lead_id = walk_signals.lead_id
            and walk.product_id = walk_signals.product_id
            and walk.signal_index = walk_signals.signal_index
    left join class_moves
        on
            walk_signals.signal_class = class_moves.signal_class
            and walk.stage = class_moves.from_stage
            and walk.chain_step < {{ max_moves_per_signal }}
    where class_moves.to_stage is not null or walk.signal_index < walk.signal_count
),

moves as (
    select
        lead_id,
        product_id,
        signal_index,
        chain_step,
        from_stage,
        stage as to_stage,
        rule_id,
        trigger
    from walk
    where chain_step > 0 or rule_id = 'initial'
),

transitions as (
    select
        moves.lead_id,
        moves.product_id,
        cast(row_number() over (
            partition by moves.lead_id, moves.product_id
            order by moves.signal_index, moves.chain_step
        ) as integer) as transition_seq,
        moves.from_stage,
        moves.to_stage,
        signals.signal_at as transitioned_at,
        moves.rule_id,
        moves.trigger,
        signals.engagement_score,
        signals.fit_score,
        signals.score,
        signals.triggering_event_id,
        rules_version.rules_version,
        moves.signal_index,
        signals.signal_kind,
        fingerprints.stage_fingerprint as inputs_fingerprint
    from moves
    inner join signals
        on
            moves.lead_id = signals.lead_id
            and moves.product_id = signals.product_id
            and moves.signal_index = signals.signal_index
    inner join fingerprints
        on moves.lead_id = fingerprints.lead_id and moves.product_id = fingerprints.product_id
    cross join rules_version
),

final as (
    select * from transitions
    {{ leadflow.lead_pair_placeholders('pairs_to_build', columns) }}
)

select * from final
