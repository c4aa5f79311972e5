{#
    Holdout lift per product and workflow: conversion rate of treated leads minus that of held-out
    leads (int_holdout_assignments), intent-to-treat (a treated lead counts whether or not a message
    reached it), with a confidence interval from the normal approximation of the difference of two
    independent proportions:
        lift = p_t - p_h,  se = sqrt(p_t (1 - p_t) / n_t + p_h (1 - p_h) / n_h),
        ci = lift -/+ z * se,  z = var('analytics_holdout_ci_z') (1.96 = two-sided 95 %).
    A lead converted = a deal of the product with it closed won at or before as_of (fct_conversions).
    Rates, lift and interval are null while either group is empty. The approximation is rough below
    ~10 conversions and ~10 non-conversions per group (see is_sample_adequate).
#}

with

assignments as (
    select * from {{ ref('int_holdout_assignments') }}
),

conversions as (
    select * from {{ ref('fct_conversions') }}
    where lead_id is not null
),

converted as (
    select distinct
        lead_id,
        product_id
    from conversions
),

flagged as (
    select
        assignments.product_id,
        assignments.workflow,
        assignments.is_holdout,
        converted.lead_id is not null as is_converted
    from assignments
    left join converted
        on assignments.lead_id = converted.lead_id and assignments.product_id = converted.product_id
),

counted as (
    select
        product_id,
        workflow,
        sum(case when not is_holdout then 1 else 0 end) as treated_leads,
        sum(case when not is_holdout and is_converted then 1 else 0 end) as treated_conversions,
        sum(case when is_holdout then 1 else 0 end) as holdout_leads,
        sum(case when is_holdout and is_converted then 1 else 0 end) as holdout_conversions
    from flagged
    group by product_id, workflow
),

rates as (
    select
        *,
        cast(treated_conversions as double precision) / nullif(treated_leads, 0) as treated_rate,
        cast(holdout_conversions as double precision) / nullif(holdout_leads, 0) as holdout_rate
    from counted
),

lifted as (
    select
        *,
        treated_rate - holdout_rate as lift,
        sqrt(
            treated_rate * (1 - treated_rate) / nullif(treated_leads, 0)
            + holdout_rate * (1 - holdout_rate) / nullif(holdout_leads, 0)
        ) as lift_standard_error
    from rates
),

final as (
    select
        product_id,
        workflow,
        cast(treated_leads as integer) as treated_leads,
        cast(treated_conversions as integer) as treated_conversions,
        cast(holdout_leads as integer) as holdout_leads,
        cast(holdout_conversions as integer) as holdout_conversions,
        treated_rate,
        holdout_rate,
        lift,
        lift_standard_error,
        cast({{ var('analytics_holdout_ci_z') }} as double precision) as ci_z,
        lift - {{ var('analytics_holdout_ci_z') }} * lift_standard_error as lift_ci_low,
        lift + {{ var('analytics_holdout_ci_z') }} * lift_standard_error as lift_ci_high,
        coalesce(
            lift - {{ var('analytics_holdout_ci_z') }} * lift_standard_error > 0
            or lift + {{ var('analytics_holdout_ci_z') }} * lift_standard_error < 0,
            false
        ) as is_significant,
        coalesce(
            treated_conversions >= 10 and treated_leads - treated_conversions >= 10
            and holdout_conversions >= 10 and holdout_leads - holdout_conversions >= 10,
            false
        ) as is_sample_adequate
    from lifted
)

select * from final
