with

deals as (
    select * from {{ source('crm', 'deals') }}
),

contact_ids as (
    select * from {{ source('crm', 'deals__contact_ids') }}
),

-- child rows hang off one version of a deal (`_dlt_parent_id` = `deals._dlt_id`)
joined as (
    select
        cast(deals.id as text) as deal_id,
        {{ leadflow.clean_text('cast(contact_ids.value as text)') }} as contact_id
    from contact_ids
    inner join deals
        on contact_ids._dlt_parent_id = deals._dlt_id
    where not coalesce(deals.archived, false)
),

final as (
    select distinct
        deal_id,
        contact_id
    from joined
    where contact_id is not null
)

select * from final
