-- A row here is a conversion whose attribution weights under one model do not add up to 1: credit
-- would be created or lost, and per-channel totals would not reconcile with closed-won deals.
with

attribution as (
    select * from {{ ref('fct_conversion_attribution') }}
),

totals as (
    select
        conversion_id,
        attribution_model,
        sum(attribution_weight) as total_weight
    from attribution
    group by conversion_id, attribution_model
)

select *
from totals
where abs(total_weight - 1) > 1e-9
