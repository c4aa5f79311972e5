-- A row here is a funnel stage with more leads than the stage before it in the same group
-- (product, workflow, channel, cohort): a lead was counted at a stage without the earlier ones.
with

funnel as (
    select * from {{ ref('fct_conversion_funnel') }}
)

select
    later.product_id,
    later.channel,
    later.cohort_week,
    later.funnel_stage,
    later.leads,
    earlier.leads as leads_at_previous_stage
from funnel as later
inner join funnel as earlier
    on
        later.funnel_row_key <> earlier.funnel_row_key
        and later.product_id = earlier.product_id
        and later.workflow = earlier.workflow
        and later.channel = earlier.channel
        and coalesce(cast(later.cohort_week as {{ dbt.type_string() }}), '')
        = coalesce(cast(earlier.cohort_week as {{ dbt.type_string() }}), '')
        and later.stage_order = earlier.stage_order + 1
where later.leads > earlier.leads
