{#
    Conversions: every CRM deal closed won (stg_crm__deals.is_closed_won) for a product of the
    products seed, with a closed_at at or before as_of. conversion_id = deal_id (a deal is for one
    product). One row per (conversion, associated lead); a won deal whose contacts resolve to no lead
    keeps one row with a null lead_id, so every closed-won deal is a conversion exactly once.
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

won_deals as (
    select
        deals.deal_id,
        deals.product_id,
        deals.closed_at as converted_at,
        deals.amount
    from deals
    inner join products
        on deals.product_id = products.product_id
    where
        deals.is_closed_won
        and deals.closed_at is not null
        and deals.closed_at <= {{ leadflow.as_of() }}
),

-- a deal listing two CRM records of one person credits that person once
deal_leads as (
    select distinct
        deal_contacts.deal_id,
        identities.lead_id
    from deal_contacts
    inner join identities
        on 'crm_contact:' || deal_contacts.contact_id = identities.identity_key
),

final as (
    select
        won_deals.deal_id as conversion_id,
        won_deals.deal_id,
        won_deals.product_id,
        won_deals.converted_at,
        won_deals.amount,
        deal_leads.lead_id
    from won_deals
    left join deal_leads
        on won_deals.deal_id = deal_leads.deal_id
)

select * from final
