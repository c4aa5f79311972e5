{#
    Every source identity mapped to the person (lead) it belongs to, per ARCHITECTURE.md:
    lead_id = md5('email:<normalized email>'), else md5('phone:<e164>'),
    else md5('crm:<contact id>') / md5('user:<user id>').

    Identities: each CRM contact, each product user (the account `user_id` when the product sent
    one, else the address on the event), and each manual lead (a `lead_upserted` event of the
    `manual` stream or source, keyed by its email, else its phone). An account takes its latest
    email / phone seen on any of its events, so its address-less events land on the same person.
    CRM duplicates merge because they share the normalized email. Nothing is merged on a weaker
    signal: two people sharing an office phone stay two leads as long as each has an email.

    Every merge is visible: identities_in_lead > 1, merge_reason says which shared value made them
    one lead, and merged_identity_keys lists all identities of the lead.
#}

-- a table: read by several models of one build, computed once per build from the persisted events
{{ config(materialized='table') }}

with

contacts as (
    select * from {{ ref('stg_crm__contacts') }}
),

-- events after as_of do not exist yet for the lead model (LEAD_MODEL.md, Time)
events as (
    select * from {{ ref('int_events_landed') }}
    where occurred_at <= {{ leadflow.as_of() }}
),

crm_identities as (
    select
        'crm_contact:' || contact_id as identity_key,
        'crm_contact' as identity_source,
        'contact_id' as identity_type,
        contact_id as source_id,
        email,
        phone_e164,
        created_at as first_seen_at,
        updated_at as last_seen_at
    from contacts
),

-- a product user: the account (user_id) when the product sent one, else the address on the event;
-- it takes its latest email / phone seen on any of its events (aggregates, not a sort of all events)
product_identities as (
    select
        own_identity_key as identity_key,
        'product_user' as identity_source,
        min(case
            when user_id is not null then 'user_id'
            when email is not null then 'email'
            else 'phone'
        end) as identity_type,
        min(coalesce(user_id, email, phone_e164)) as source_id,
        {{ leadflow.latest_value('email', ['occurred_at', 'event_id']) }} as email,
        {{ leadflow.latest_value('phone_e164', ['occurred_at', 'event_id']) }} as phone_e164,
        min(occurred_at) as first_seen_at,
        max(occurred_at) as last_seen_at
    from events
    where stream = 'product_events' and own_identity_key is not null
    group by own_identity_key
),

manual_lead_events as (
    select
        occurred_at,
        event_id,
        email,
        phone_e164,
        case
            when email is not null then 'manual_email:' || email
            else 'manual_phone:' || phone_e164
        end as identity_key,
        case when email is not null then 'email' else 'phone' end as identity_type,
        coalesce(email, phone_e164) as source_id
    from events
    where
        event_type = 'lead_upserted'
        and (stream = 'manual' or event_source = 'manual')
        and coalesce(email, phone_e164) is not null
),

manual_identities as (
    select
        identity_key,
        'manual_lead' as identity_source,
        identity_type,
        source_id,
        max(email) as email,
        {{ leadflow.latest_value('phone_e164', ['occurred_at', 'event_id']) }} as phone_e164,
        min(occurred_at) as first_seen_at,
        max(occurred_at) as last_seen_at
    from manual_lead_events
    group by identity_key, identity_type, source_id
),

identities as (
    select * from crm_identities
    union all
    select * from product_identities
    union all
    select * from manual_identities
),

keyed as (
    select
        *,
        case
            when email is not null then 'email'
            when phone_e164 is not null then 'phone'
            when identity_source = 'crm_contact' then 'crm_contact_id'
            else 'user_id'
        end as match_reason,
        case
            when email is not null then 'email:' || email
            when phone_e164 is not null then 'phone:' || phone_e164
            when identity_source = 'crm_contact' then 'crm:' || source_id
            else 'user:' || source_id
        end as lead_key
    from identities
),

leads as (
    select
        lead_key,
        count(*) as identities_in_lead,
        string_agg(identity_key, ', ' order by {{ leadflow.codepoint_order('identity_key') }})
            as merged_identity_keys
    from keyed
    group by lead_key
),

final as (
    select
        keyed.identity_key,
        keyed.identity_source,
        keyed.identity_type,
        keyed.source_id,
        keyed.email,
        keyed.phone_e164,
        keyed.lead_key,
        {{ leadflow.lead_id_from_key('keyed.lead_key') }} as lead_id,
        keyed.match_reason,
        leads.identities_in_lead,
        case
            when leads.identities_in_lead > 1 and keyed.match_reason = 'email'
                then 'same normalized email ' || keyed.email
            when leads.identities_in_lead > 1 and keyed.match_reason = 'phone'
                then 'same E.164 phone ' || keyed.phone_e164 || ' (no email)'
        end as merge_reason,
        leads.merged_identity_keys,
        keyed.first_seen_at,
        keyed.last_seen_at
    from keyed
    inner join leads
        on keyed.lead_key = leads.lead_key
)

select * from final
