{#
    Every event of every stream up to as_of, with the lead it belongs to. Product events and manual
    lead upserts are identities themselves (int_lead_identities); any other event (a stage override,
    a delivery receipt …) only attaches to a lead that already exists, in this order: the product
    account it names (user_id), the lead the Lead Tracker API stamped on it (properties.lead_id),
    the lead of its email, the only lead with its phone. Events matching none get no lead_id;
    attributed_by says which rule found the lead.
#}

-- a table: read by several models of one build (and by every incremental model's change detection),
-- so it is computed once per build instead of once per reader
{{ config(materialized='table') }}

with

events as (
    select * from {{ ref('stg_events__events') }}
    where occurred_at <= {{ leadflow.as_of() }}
),

identities as (
    select * from {{ ref('int_lead_identities') }}
),

known_leads as (
    select distinct lead_id from identities
),

email_leads as (
    select distinct
        email,
        lead_id
    from identities
    where match_reason = 'email'
),

-- a phone shared by two people (an office line) identifies neither
phone_leads as (
    select
        phone_e164,
        min(lead_id) as lead_id
    from identities
    where phone_e164 is not null
    group by phone_e164
    having count(distinct lead_id) = 1
),

keyed as (
    select
        *,
        case
            when stream = 'product_events'
                then {{ leadflow.product_identity_key('user_id', 'email', 'phone_e164') }}
            when event_type = 'lead_upserted' and (stream = 'manual' or event_source = 'manual')
                then
                    case
                        when email is not null then 'manual_email:' || email
                        when phone_e164 is not null then 'manual_phone:' || phone_e164
                    end
        end as own_identity_key
    from events
),

attributed as (
    select
        keyed.*,
        coalesce(
            own_identity.lead_id,
            product_account.lead_id,
            stamped_lead.lead_id,
            email_leads.lead_id,
            phone_leads.lead_id
        ) as lead_id,
        case
            when own_identity.lead_id is not null then 'identity'
            when product_account.lead_id is not null then 'user_id'
            when stamped_lead.lead_id is not null then 'properties_lead_id'
            when email_leads.lead_id is not null then 'email'
            when phone_leads.lead_id is not null then 'phone'
        end as attributed_by
    from keyed
    left join identities as own_identity
        on keyed.own_identity_key = own_identity.identity_key
    left join identities as product_account
        on 'product_user:' || keyed.user_id = product_account.identity_key
    left join known_leads as stamped_lead
        on keyed.properties_lead_id = stamped_lead.lead_id
    left join email_leads
        on keyed.email = email_leads.email
    left join phone_leads
        on keyed.phone_e164 = phone_leads.phone_e164
),

final as (
    select
        event_id,
        lead_id,
        attributed_by,
        stream,
        event_type,
        occurred_at,
        product_id,
        event_source,
        feature_name,
        properties_to_stage,
        properties_product_id
    from attributed
)

select * from final
