{#
    Which message each (lead, product) is due by its current stage: the routing row
    (fct_lead_workflow_routing) whose stage has a step in seed workflow_steps, with why (stage, the
    rule that moved the lead there, score against the thresholds) and what the budget ranks by
    (products.priority, then workflow_steps.step_order).
#}

with

routing as (
    select * from {{ ref('fct_lead_workflow_routing') }}
),

lead_stages as (
    select * from {{ ref('fct_lead_stages') }}
),

lead_scores as (
    select * from {{ ref('fct_lead_scores') }}
),

products as (
    select * from {{ ref('products') }}
),

workflow_steps as (
    select * from {{ ref('workflow_steps') }}
),

leads as (
    select * from {{ ref('dim_leads') }}
),

candidates as (
    select
        routing.lead_id,
        routing.product_id,
        products.product_name,
        routing.workflow,
        workflow_steps.step,
        workflow_steps.template,
        workflow_steps.send_window as send_window_kind,
        workflow_steps.step_order,
        routing.workflow_step as stage,
        routing.step_entered_at as stage_entered_at,
        lead_stages.entered_by_rule_id,
        cast(round(coalesce(lead_scores.score, 0)) as integer) as score,
        products.mql_threshold,
        products.sql_threshold,
        products.priority,
        products.channels,
        products.is_active as is_product_active,
        leads.first_name
    from routing
    inner join workflow_steps
        on routing.workflow_step = workflow_steps.stage
    inner join products
        on routing.product_id = products.product_id
    left join lead_stages
        on
            routing.lead_id = lead_stages.lead_id
            and routing.product_id = lead_stages.product_id
    left join lead_scores
        on
            routing.lead_id = lead_scores.lead_id
            and routing.product_id = lead_scores.product_id
    left join leads
        on routing.lead_id = leads.lead_id
),

final as (
    select
        *,
        'stage ' || stage || ' in ' || product_id
        || ' since ' || cast(cast({{ leadflow.to_local_time('stage_entered_at', "'UTC'") }} as date) as text)
        || ' (rule ' || coalesce(entered_by_rule_id, 'unknown') || '; score ' || cast(score as text)
        || ', MQL ' || cast(mql_threshold as text) || ', SQL ' || cast(sql_threshold as text)
        || ') → step ' || step as reason
    from candidates
)

select * from final
