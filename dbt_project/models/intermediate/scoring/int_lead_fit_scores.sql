{#
    Fit per (lead, product): the points of the product's fit rules matching the lead's CRM attributes
    (its most recently modified CRM record and that record's company), clamped to [0, score_cap].
    `equals` / `contains` compare case-insensitively; `at_least` compares numbers. Leads without a
    CRM record have no attributes and so no row (fit 0).
#}

-- a table: read by several models of one build (and by every incremental model's change detection),
-- so it is computed once per build instead of once per reader
{{ config(materialized='table') }}

with

identities as (
    select * from {{ ref('int_lead_identities') }}
),

contacts as (
    select * from {{ ref('stg_crm__contacts') }}
),

companies as (
    select * from {{ ref('stg_crm__companies') }}
),

fit_rules as (
    select
        *,
        -- cast only numeric rules: PostgreSQL would fail on 'software' cast to a number
        case when operator = 'at_least' then cast(value as double precision) end as number_threshold
    from {{ ref('fit_rules') }}
),

products as (
    select * from {{ ref('products') }}
),

-- companies join before the ranking: PostgreSQL estimates `rank = 1` at one row and would otherwise
-- re-run the companies view once per lead in a nested loop (measured 22 s for 10k leads)
crm_records as (
    select
        identities.lead_id,
        contacts.contact_id,
        contacts.country,
        contacts.job_title,
        companies.industry,
        companies.employee_count,
        row_number() over (
            partition by identities.lead_id
            order by contacts.updated_at desc nulls last, contacts.contact_id desc
        ) as recency_rank
    from identities
    inner join contacts
        on
            identities.identity_source = 'crm_contact'
            and identities.source_id = contacts.contact_id
    left join companies
        on contacts.company_id = companies.company_id
),

lead_attributes as (
    select
        lead_id,
        country,
        job_title,
        industry,
        employee_count
    from crm_records
    where recency_rank = 1
),

attribute_values as (
    select
        lead_id,
        'country' as attribute_name,
        country as text_value,
        cast(null as double precision) as number_value
    from lead_attributes
    union all
    select
        lead_id,
        'job_title' as attribute_name,
        job_title as text_value,
        cast(null as double precision) as number_value
    from lead_attributes
    union all
    select
        lead_id,
        'industry' as attribute_name,
        industry as text_value,
        cast(null as double precision) as number_value
    from lead_attributes
    union all
    select
        lead_id,
        'employee_count' as attribute_name,
        cast(employee_count as {{ dbt.type_string() }}) as text_value,
        cast(employee_count as double precision) as number_value
    from lead_attributes
),

matches as (
    select
        attribute_values.lead_id,
        fit_rules.product_id,
        fit_rules.points
    from attribute_values
    inner join fit_rules
        on attribute_values.attribute_name = fit_rules.attribute
    where
        (fit_rules.operator = 'equals' and lower(attribute_values.text_value) = lower(fit_rules.value))
        or (
            fit_rules.operator = 'contains'
            and lower(attribute_values.text_value) like '%' || lower(fit_rules.value) || '%'
        )
        or (
            fit_rules.operator = 'at_least'
            and attribute_values.number_value >= fit_rules.number_threshold
        )
),

summed as (
    select
        matches.lead_id,
        matches.product_id,
        sum(matches.points) as fit_points,
        max(products.score_cap) as score_cap
    from matches
    inner join products
        on matches.product_id = products.product_id
    group by matches.lead_id, matches.product_id
),

final as (
    select
        lead_id,
        product_id,
        cast(least(greatest(fit_points, 0), score_cap) as double precision) as fit_score
    from summed
)

select * from final
