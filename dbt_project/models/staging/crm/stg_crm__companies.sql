with

source as (
    select * from {{ source('crm', 'companies') }}
),

renamed as (
    select
        cast(id as text) as company_id,
        {{ leadflow.clean_text('name') }} as company_name,
        lower({{ leadflow.clean_text('domain') }}) as company_domain,
        lower({{ leadflow.clean_text('industry') }}) as industry,
        cast(numberofemployees as bigint) as employee_count,
        upper({{ leadflow.clean_text('country') }}) as country,
        createdate as created_at,
        hs_lastmodifieddate as updated_at,
        coalesce(archived, false) as is_archived
    from source
),

ranked as (
    select
        *,
        row_number() over (
            partition by company_id
            order by updated_at desc nulls last, created_at desc nulls last
        ) as version_rank
    from renamed
),

final as (
    select
        company_id,
        company_name,
        company_domain,
        industry,
        employee_count,
        country,
        created_at,
        updated_at
    from ranked
    where version_rank = 1 and not is_archived
)

select * from final
