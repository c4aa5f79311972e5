{#
    Multi-touch attribution: one row per conversion x touch x model. A conversion (a CRM deal closed won,
    int_deal_conversions_resolved) is credited to the touches (int_touches_unioned: messages sent and
    the product's own engagement events) of its associated leads in its product, touched at or before
    the close and at most var('analytics_attribution_lookback_days') days before it. Touches are
    ordered by (touched_at, touch_id); n = their number, i = a touch's position.
    - first_touch: 1 for i = 1.          - last_touch: 1 for i = n.        - linear: 1 / n.
    - time_decay: 0.5 ^ (days before the close / var('analytics_time_decay_half_life_days')),
      normalized to sum to 1.
    - position_based: first var('analytics_position_first_share') (0.4), last
      var('analytics_position_last_share') (0.4), the rest split evenly among the middle touches; with
      two touches, first and last share the credit in proportion (0.5 / 0.5); one touch gets 1.
    A conversion without any touch in the window gets one row per model with touch_type `none`,
    touch_id `none`, weight 1, so every conversion's weights sum to exactly 1 under every model and
    credits reconcile with closed-won deals.
#}

{%- set first_share = var('analytics_position_first_share') %}
{%- set last_share = var('analytics_position_last_share') %}

with

conversions as (
    select * from {{ ref('int_deal_conversions_resolved') }}
),

touches as (
    select * from {{ ref('int_touches_unioned') }}
),

conversion_deals as (
    select distinct
        conversion_id,
        deal_id,
        product_id,
        converted_at,
        amount
    from conversions
),

touches_in_window as (
    select
        conversions.conversion_id,
        touches.touch_id,
        touches.touch_type,
        touches.lead_id,
        touches.channel,
        touches.template,
        touches.workflow,
        touches.touched_at,
        {{ leadflow.days_between('touches.touched_at', 'conversions.converted_at') }}
            as days_before_conversion
    from conversions
    inner join touches
        on
            conversions.lead_id = touches.lead_id
            and conversions.product_id = touches.product_id
            and conversions.converted_at >= touches.touched_at
    where
        {{ leadflow.days_between('touches.touched_at', 'conversions.converted_at') }}
        <= {{ var('analytics_attribution_lookback_days') }}
),

untouched as (
    select
        conversion_deals.conversion_id,
        'none' as touch_id,
        'none' as touch_type,
        cast(null as {{ dbt.type_string() }}) as lead_id,
        'none' as channel,
        cast(null as {{ dbt.type_string() }}) as template,
        cast(null as {{ dbt.type_string() }}) as workflow,
        cast(null as timestamp with time zone) as touched_at,
        cast(null as double precision) as days_before_conversion
    from conversion_deals
    where not exists (
            select 1 from touches_in_window
            where touches_in_window.conversion_id = conversion_deals.conversion_id
        )
),

all_touches as (
    select * from touches_in_window
    union all
    select * from untouched
),

positioned as (
    select
        *,
        row_number() over (
            partition by conversion_id
            order by touched_at, {{ leadflow.codepoint_order('touch_id') }}
        ) as touch_position,
        count(*) over (partition by conversion_id) as touch_count,
        case
            when touch_type = 'none' then 1.0
            else power(
                    cast(0.5 as double precision),
                    days_before_conversion / {{ var('analytics_time_decay_half_life_days') }}
                )
        end as decay_factor
    from all_touches
),

normalized as (
    select
        *,
        sum(decay_factor) over (partition by conversion_id) as decay_total
    from positioned
),

models as (
    select 'first_touch' as attribution_model
    union all
    select 'last_touch'
    union all
    select 'linear'
    union all
    select 'time_decay'
    union all
    select 'position_based'
),

weighted as (
    select
        normalized.*,
        models.attribution_model,
        case models.attribution_model
            when 'first_touch' then case when normalized.touch_position = 1 then 1.0 else 0.0 end
            when 'last_touch'
                then case when normalized.touch_position = normalized.touch_count then 1.0 else 0.0 end
            when 'linear' then 1.0 / normalized.touch_count
            when 'time_decay' then normalized.decay_factor / normalized.decay_total
            when 'position_based' then
                case
                    when normalized.touch_count = 1 then 1.0
                    when normalized.touch_count = 2 and normalized.touch_position = 1
                        then {{ first_share }} / ({{ first_share }} + {{ last_share }})
                    when normalized.touch_count = 2
                        then {{ last_share }} / ({{ first_share }} + {{ last_share }})
                    when normalized.touch_position = 1 then {{ first_share }}
                    when normalized.touch_position = normalized.touch_count then {{ last_share }}
                    else (1.0 - {{ first_share }} - {{ last_share }}) / (normalized.touch_count - 2)
                end
        end as attribution_weight
    from normalized
    cross join models
),

final as (
    select
        conversion_deals.conversion_id,
        conversion_deals.deal_id,
        conversion_deals.product_id,
        conversion_deals.converted_at,
        conversion_deals.amount,
        weighted.attribution_model,
        weighted.touch_id,
        weighted.touch_type,
        weighted.lead_id as touch_lead_id,
        weighted.channel,
        weighted.template,
        weighted.workflow,
        weighted.touched_at,
        cast(weighted.days_before_conversion as double precision) as days_before_conversion,
        cast(weighted.touch_position as integer) as touch_position,
        cast(weighted.touch_count as integer) as touch_count,
        cast(weighted.attribution_weight as double precision) as attribution_weight,
        cast(weighted.attribution_weight * conversion_deals.amount as double precision) as attributed_amount
    from weighted
    inner join conversion_deals
        on weighted.conversion_id = conversion_deals.conversion_id
)

select * from final
