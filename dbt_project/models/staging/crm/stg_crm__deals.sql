with

source as (
    select * from {{ source('crm', 'deals') }}
),

renamed as (
    select
        cast(id as text) as deal_id,
        {{ leadflow.clean_text('dealname') }} as deal_name,
        cast(amount as double precision) as amount,
        lower({{ leadflow.clean_text('dealstage') }}) as deal_stage,
        {{ leadflow.clean_text('pipeline') }} as pipeline,
        lower({{ leadflow.clean_text('leadflow_product') }}) as product_id,
        closedate as closed_at,
        createdate as created_at,
        hs_lastmodifieddate as updated_at,
        coalesce(archived, false) as is_archived
    from source
),

ranked as (
    select
        *,
        row_number() over (
            partition by deal_id
            order by updated_at desc nulls last, created_at desc nulls last
        ) as version_rank
    from renamed
),

final as (
    select
        deal_id,
        deal_name,
        amount,
        deal_stage,
        pipeline,
        product_id,
        -- HubSpot's built-in closed stages ('closedwon' / 'closedlost'), which the demo CRM mirrors
        coalesce(deal_stage = 'closedwon', false) as is_closed_won,
        coalesce(deal_stage = 'closedlost', false) as is_closed_lost,
        closed_at,
        created_at,
        updated_at
    from ranked
    where version_rank = 1 and not is_archived
)

select * from final
