-- A row here is a closed-won deal (product in the seed, closed at or before as_of) that is not exactly
-- one conversion in fct_conversions and fct_conversion_attribution (per model), or a conversion that is
-- no such deal: conversion counts and attributed credit would not match the CRM.
with

deals as (
    select * from {{ ref('stg_crm__deals') }}
),

products as (
    select * from {{ ref('products') }}
),

won as (
    select deals.deal_id
    from deals
    inner join products on deals.product_id = products.product_id
    where deals.is_closed_won and deals.closed_at <= {{ leadflow.as_of() }}
),

converted as (
    select distinct conversion_id from {{ ref('fct_conversions') }}
),

attributed as (
    select
        conversion_id,
        count(distinct attribution_model) as models
    from {{ ref('fct_conversion_attribution') }}
    group by conversion_id
)

select
    coalesce(won.deal_id, converted.conversion_id) as deal_id,
    won.deal_id is not null as is_won_deal,
    converted.conversion_id is not null as is_conversion,
    attributed.models
from won
full outer join converted on won.deal_id = converted.conversion_id
left join attributed on coalesce(won.deal_id, converted.conversion_id) = attributed.conversion_id
where won.deal_id is null or converted.conversion_id is null or coalesce(attributed.models, 0) <> 5
