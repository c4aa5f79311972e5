{#
    Which nurture workflow step every (lead, product) with a stage is at (LEAD_MODEL.md, Routing):
    the product's nurture_workflow, the current stage as the step, and whether that stage is one
    nurture works on. Routing in a product depends only on that product's signals (plus its declared
    cross-product rules), because stages do.
#}

with

lead_stages as (
    select * from {{ ref('fct_lead_stages') }}
),

products as (
    select * from {{ ref('products') }}
),

final as (
    select
        lead_stages.lead_id,
        lead_stages.product_id,
        products.nurture_workflow as workflow,
        lead_stages.stage as workflow_step,
        lead_stages.stage in ('engaged', 'mql', 'sql', 'recycled', 'dormant') as is_in_nurture,
        lead_stages.entered_at as step_entered_at,
        products.is_active as is_product_active,
        products.priority as product_priority,
        products.channels
    from lead_stages
    inner join products
        on lead_stages.product_id = products.product_id
)

select * from final
