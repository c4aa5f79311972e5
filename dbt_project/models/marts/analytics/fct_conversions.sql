{#
    One row per (conversion, lead): every CRM deal closed won (int_deal_conversions_resolved) with each
    lead associated with it, and how long that lead's journey took: days from the lead's first touch
    in the product and from its qualification (first transition into `mql` or `sql`; a lead moved
    straight to `sql` by hand counts from then) to the close. Durations are null when the lead has no
    such moment before the close. A won deal without any resolvable lead has one row, lead_id null.
#}

with

conversions as (
    select * from {{ ref('int_deal_conversions_resolved') }}
),

first_touches as (
    select * from {{ ref('int_lead_first_touches_ranked') }}
),

transitions as (
    select * from {{ ref('fct_lead_stage_transitions') }}
),

products as (
    select * from {{ ref('products') }}
),

qualified as (
    select
        lead_id,
        product_id,
        min(transitioned_at) as mql_at
    from transitions
    where to_stage in ('mql', 'sql')
    group by lead_id, product_id
),

joined as (
    select
        conversions.conversion_id,
        conversions.deal_id,
        conversions.product_id,
        products.nurture_workflow as workflow,
        conversions.lead_id,
        conversions.converted_at,
        conversions.amount,
        first_touches.first_touch_at,
        first_touches.first_touch_type,
        coalesce(first_touches.first_touch_channel, 'none') as first_touch_channel,
        first_touches.cohort_week,
        qualified.mql_at
    from conversions
    inner join products
        on conversions.product_id = products.product_id
    left join first_touches
        on conversions.lead_id = first_touches.lead_id and conversions.product_id = first_touches.product_id
    left join qualified
        on conversions.lead_id = qualified.lead_id and conversions.product_id = qualified.product_id
),

final as (
    select
        {{ leadflow.hash_key(['conversion_id', 'lead_id']) }} as conversion_lead_key,
        conversion_id,
        deal_id,
        product_id,
        workflow,
        lead_id,
        converted_at,
        amount,
        first_touch_at,
        first_touch_type,
        first_touch_channel,
        cohort_week,
        mql_at,
        case
            when
                first_touch_at <= converted_at
                then {{ leadflow.days_between('first_touch_at', 'converted_at') }}
        end as days_from_first_touch,
        case
            when mql_at <= converted_at then {{ leadflow.days_between('mql_at', 'converted_at') }}
        end as days_from_mql
    from joined
)

select * from final
