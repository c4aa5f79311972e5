{#
    The current stage of every (lead, product) with a signal: the to_stage of its last transition,
    entered_at when that happened. A cheap full recompute from fct_lead_stage_transitions; as_of
    records the instant the build computed stages at.
#}

with

transitions as (
    select * from {{ ref('fct_lead_stage_transitions') }}
),

ranked as (
    select
        *,
        row_number() over (
            partition by lead_id, product_id order by transition_seq desc
        ) as recency_rank,
        count(*) over (partition by lead_id, product_id) as transition_count
    from transitions
),

final as (
    select
        lead_id,
        product_id,
        to_stage as stage,
        transitioned_at as entered_at,
        rule_id as entered_by_rule_id,
        trigger as entered_by_trigger,
        cast(transition_count as integer) as transition_count,
        score as score_at_entry,
        rules_version,
        {{ leadflow.as_of() }} as as_of
    from ranked
    where recency_rank = 1
)

select * from final
