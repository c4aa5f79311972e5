{#
    The first touch of every (lead, product): earliest touched_at, ties broken by touch_id; its
    channel and the UTC Monday of its week (the lead's weekly cohort).
#}

with

touches as (
    select * from {{ ref('int_touches_unioned') }}
),

ranked as (
    select
        *,
        row_number() over (
            partition by lead_id, product_id
            order by touched_at, {{ leadflow.codepoint_order('touch_id') }}
        ) as touch_rank
    from touches
),

final as (
    select
        lead_id,
        product_id,
        touch_id as first_touch_id,
        touch_type as first_touch_type,
        channel as first_touch_channel,
        touched_at as first_touch_at,
        {{ leadflow.utc_week_start('touched_at') }} as cohort_week
    from ranked
    where touch_rank = 1
)

select * from final
