{#
    Deal signals per (lead, product) up to as_of (LEAD_MODEL.md, Stages): `deal_created` at a deal's
    created_at and `deal_closed_won` / `deal_closed_lost` at its closed_at, for every lead with a CRM
    contact on the deal, in the deal's product. A deal listing two records of one person signals once.
#}

with

deals as (
    select * from {{ ref('stg_crm__deals') }}
),

deal_contacts as (
    select * from {{ ref('stg_crm__deal_contacts') }}
),

identities as (
    select * from {{ ref('int_lead_identities') }}
),

products as (
    select * from {{ ref('products') }}
),

deal_leads as (
    select distinct
        identities.lead_id,
        deals.product_id,
        deals.deal_id,
        deals.created_at,
        deals.closed_at,
        deals.is_closed_won,
        deals.is_closed_lost
    from deals
    inner join deal_contacts
        on deals.deal_id = deal_contacts.deal_id
    inner join identities
        on 'crm_contact:' || deal_contacts.contact_id = identities.identity_key
    inner join products
        on deals.product_id = products.product_id
),

created as (
    select
        lead_id,
        product_id,
        deal_id,
        'deal_created' as signal_kind,
        created_at as signal_at
    from deal_leads
    where created_at is not null
),

closed as (
    select
        lead_id,
        product_id,
        deal_id,
        case when is_closed_won then 'deal_closed_won' else 'deal_closed_lost' end as signal_kind,
        closed_at as signal_at
    from deal_leads
    where (is_closed_won or is_closed_lost) and closed_at is not null
),

final as (
    select * from created
    where signal_at <= {{ leadflow.as_of() }}
    union all
    select * from closed
    where signal_at <= {{ leadflow.as_of() }}
)

select * from final
