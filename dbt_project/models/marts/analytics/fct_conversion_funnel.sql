{#
    The lifecycle funnel per product, workflow, first-touch channel and weekly cohort (UTC Monday of
    the lead's first touch; null cohort and channel `none` for leads never touched, e.g. known only
    from a deal). Population: every (lead, product) with a stage (fct_lead_stages).
    Funnel stages, in order: new, engaged, mql, sql, opportunity, customer. A lead counts at a stage
    when it ever reached that stage or a later one (fct_lead_stage_transitions; a manual jump from new
    to sql counts for engaged and mql too), and at `customer` also when a deal of the product with it
    was closed won (fct_conversions). So counts never increase down the funnel.
    conversion_rate = leads at the stage / leads at `new` in the same group; step_rate = leads at the
    stage / leads at the previous stage.
#}

with

lead_stages as (
    select * from {{ ref('fct_lead_stages') }}
),

transitions as (
    select * from {{ ref('fct_lead_stage_transitions') }}
),

first_touches as (
    select * from {{ ref('int_lead_first_touches_ranked') }}
),

conversions as (
    select * from {{ ref('fct_conversions') }}
),

products as (
    select * from {{ ref('products') }}
),

funnel_stages as (
    select
        'new' as funnel_stage,
        1 as stage_order
    union all
    select
        'engaged' as funnel_stage,
        2 as stage_order
    union all
    select
        'mql' as funnel_stage,
        3 as stage_order
    union all
    select
        'sql' as funnel_stage,
        4 as stage_order
    union all
    select
        'opportunity' as funnel_stage,
        5 as stage_order
    union all
    select
        'customer' as funnel_stage,
        6 as stage_order
),

reached as (
    select
        transitions.lead_id,
        transitions.product_id,
        max(funnel_stages.stage_order) as deepest_stage_order
    from transitions
    inner join funnel_stages
        on transitions.to_stage = funnel_stages.funnel_stage
    group by transitions.lead_id, transitions.product_id
),

converted as (
    select distinct
        lead_id,
        product_id
    from conversions
    where lead_id is not null
),

lead_depths as (
    select
        lead_stages.lead_id,
        lead_stages.product_id,
        products.nurture_workflow as workflow,
        coalesce(first_touches.first_touch_channel, 'none') as channel,
        first_touches.cohort_week,
        case
            when converted.lead_id is not null then 6
            else coalesce(reached.deepest_stage_order, 1)
        end as deepest_stage_order
    from lead_stages
    inner join products
        on lead_stages.product_id = products.product_id
    left join reached
        on lead_stages.lead_id = reached.lead_id and lead_stages.product_id = reached.product_id
    left join first_touches
        on lead_stages.lead_id = first_touches.lead_id and lead_stages.product_id = first_touches.product_id
    left join converted
        on lead_stages.lead_id = converted.lead_id and lead_stages.product_id = converted.product_id
),

counted as (
    select
        lead_depths.product_id,
        lead_depths.workflow,
        lead_depths.channel,
        lead_depths.cohort_week,
        funnel_stages.funnel_stage,
        funnel_stages.stage_order,
        sum(case when lead_depths.deepest_stage_order >= funnel_stages.stage_order then 1 else 0 end)
            as leads
    from lead_depths
    cross join funnel_stages
    group by
        lead_depths.product_id,
        lead_depths.workflow,
        lead_depths.channel,
        lead_depths.cohort_week,
        funnel_stages.funnel_stage,
        funnel_stages.stage_order
),

rated as (
    select
        *,
        max(case when stage_order = 1 then leads end) over (
            partition by product_id, workflow, channel, cohort_week
        ) as leads_entered,
        lag(leads) over (
            partition by product_id, workflow, channel, cohort_week order by stage_order
        ) as leads_at_previous_stage
    from counted
),

final as (
    select
        {{ leadflow.hash_key(['product_id', 'workflow', 'channel', 'cohort_week', 'funnel_stage']) }}
            as funnel_row_key,
        product_id,
        workflow,
        channel,
        cohort_week,
        funnel_stage,
        cast(stage_order as integer) as stage_order,
        cast(leads as integer) as leads,
        cast(leads_entered as integer) as leads_entered,
        cast(leads as double precision) / nullif(leads_entered, 0) as conversion_rate,
        cast(leads as double precision) / nullif(coalesce(leads_at_previous_stage, leads), 0) as step_rate
    from rated
)

select * from final
