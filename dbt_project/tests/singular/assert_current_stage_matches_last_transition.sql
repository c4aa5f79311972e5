-- A row here is a (lead, product) whose current stage in fct_lead_stages is not the to_stage of
-- its last audit row (or that has a stage without a trail, or a trail without a stage): the
-- current stage and the audit trail tell two different stories.
with

stages as (
    select * from {{ ref('fct_lead_stages') }}
),

last_transitions as (
    -- a window, not a correlated max(): PostgreSQL re-scanned the table for every row (quadratic)
    select
        lead_id,
        product_id,
        to_stage,
        transitioned_at
    from (
        select
            lead_id,
            product_id,
            to_stage,
            transitioned_at,
            row_number() over (
                partition by lead_id, product_id order by transition_seq desc
            ) as recency
        from {{ ref('fct_lead_stage_transitions') }}
    ) as ranked
    where recency = 1
)

select
    coalesce(stages.lead_id, last_transitions.lead_id) as lead_id,
    coalesce(stages.product_id, last_transitions.product_id) as product_id,
    stages.stage,
    last_transitions.to_stage
from stages
full outer join last_transitions
    on stages.lead_id = last_transitions.lead_id and stages.product_id = last_transitions.product_id
where
    stages.stage is distinct from last_transitions.to_stage
    or stages.entered_at is distinct from last_transitions.transitioned_at
