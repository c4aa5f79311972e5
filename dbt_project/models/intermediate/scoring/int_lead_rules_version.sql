{#
    One row: rules_version = md5 over the ordered rows of scoring_rules, fit_rules, stage_rules and
    products (LEAD_MODEL.md), recorded on every stage transition and part of every inputs fingerprint,
    so editing a seed rebuilds every lead on the next incremental build.
#}

with

scoring_rules as (
    select * from {{ leadflow.scoring_rules_relation() }}
),

fit_rules as (
    select * from {{ ref('fit_rules') }}
),

stage_rules as (
    select * from {{ ref('stage_rules') }}
),

products as (
    select * from {{ ref('products') }}
),

{%- set text = dbt.type_string() %}

rule_rows as (
    select
        'scoring_rules' as seed_name,
        rule_id as row_key,
        concat_ws(
            '|', rule_id, product_id, event_product_id, event_type, cast(points as {{ text }}),
            dimension, cast(is_repeatable as {{ text }}), coalesce(cast(daily_cap as {{ text }}), '')
        ) as row_text
    from scoring_rules
    union all
    select
        'fit_rules' as seed_name,
        rule_id as row_key,
        concat_ws('|', rule_id, product_id, attribute, operator, value, cast(points as {{ text }}))
            as row_text
    from fit_rules
    union all
    select
        'stage_rules' as seed_name,
        rule_id as row_key,
        concat_ws('|', rule_id, from_stage, to_stage, trigger, cast(priority as {{ text }})) as row_text
    from stage_rules
    union all
    select
        'products' as seed_name,
        product_id as row_key,
        concat_ws(
            '|', product_id, product_name, cast(is_active as {{ text }}),
            cast(mql_threshold as {{ text }}), cast(sql_threshold as {{ text }}),
            cast(decay_half_life_days as {{ text }}), cast(score_cap as {{ text }}), nurture_workflow,
            channels, coalesce(cross_product_sources, ''), cast(priority as {{ text }})
        ) as row_text
    from products
),

final as (
    select
        {{ leadflow.md5_hex(
            "string_agg(seed_name || ':' || row_text, chr(10) order by "
            ~ leadflow.codepoint_order('seed_name') ~ ", " ~ leadflow.codepoint_order('row_key') ~ ")"
        ) }} as rules_version
    from rule_rows
)

select * from final
