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

-- a table: read by several models of one build (and by every incremental model's change detection),
-- so it is computed once per build instead of once per reader
{{ config(materialized='table') }}

with

contacts as (
    select * from {{ ref('stg_crm__contacts') }}
),

-- events after as_of do not exist yet for the lead model (LEAD_MODEL.md, Time)
product_events as (
    select * from {{ ref('stg_events__product_events') }}
    where occurred_at <= {{ leadflow.as_of() }}
),

all_events as (
    select * from {{ ref('stg_events__events') }}
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

product_events_identified as (
    select
        event_id,
        occurred_at,
        email,
        phone_e164,
        {{ leadflow.product_identity_key('user_id', 'email', 'phone_e164') }} as identity_key,
        case
            when user_id is not null then 'user_id'
            when email is not null then 'email'
            when phone_e164 is not null then 'phone'
        end as identity_type,
        coalesce(user_id, email, phone_e164) as source_id
    from product_events
),

product_user_emails as (
    select
        identity_key,
        email,
        row_number() over (
            partition by identity_key order by occurred_at desc, event_id desc
        ) as recency_rank
    from product_events_identified
    where identity_key is not null and email is not null
),

product_user_phones as (
    select
        identity_key,
        phone_e164,
        row_number() over (
            partition by identity_key order by occurred_at desc, event_id desc
        ) as recency_rank
    from product_events_identified
    where identity_key is not null and phone_e164 is not null
),

product_users as (
    select
        identity_key,
        identity_type,
        source_id,
        min(occurred_at) as first_seen_at,
        max(occurred_at) as last_seen_at
    from product_events_identified
    where identity_key is not null
    group by identity_key, identity_type, source_id
),

product_identities as (
    select
        product_users.identity_key,
        'product_user' as identity_source,
        product_users.identity_type,
        product_users.source_id,
        product_user_emails.email,
        product_user_phones.phone_e164,
        product_users.first_seen_at,
        product_users.last_seen_at
    from product_users
    left join product_user_emails
        on
            product_users.identity_key = product_user_emails.identity_key
            and product_user_emails.recency_rank = 1
    left join product_user_phones
        on
            product_users.identity_key = product_user_phones.identity_key
            and product_user_phones.recency_rank = 1
),

manual_lead_events as (
    select
        event_id,
        occurred_at,
        email,
        phone_e164,
        case
            when email is not null then 'manual_email:' || email
            when phone_e164 is not null then 'manual_phone:' || phone_e164
        end as identity_key,
        case when email is not null then 'email' else 'phone' end as identity_type,
        coalesce(email, phone_e164) as source_id
    from all_events
    where
        event_type = 'lead_upserted'
        and (stream = 'manual' or event_source = 'manual')
        and coalesce(email, phone_e164) is not null
),

manual_lead_phones as (
    select
        identity_key,
        phone_e164,
        row_number() over (
            partition by identity_key order by occurred_at desc, event_id desc
        ) as recency_rank
    from manual_lead_events
    where phone_e164 is not null
),

manual_identities as (
    select
        manual_lead_events.identity_key,
        'manual_lead' as identity_source,
        manual_lead_events.identity_type,
        manual_lead_events.source_id,
        max(manual_lead_events.email) as email,
        max(manual_lead_phones.phone_e164) as phone_e164,
        min(manual_lead_events.occurred_at) as first_seen_at,
        max(manual_lead_events.occurred_at) as last_seen_at
    from manual_lead_events
    left join manual_lead_phones
        on
            manual_lead_events.identity_key = manual_lead_phones.identity_key
            and manual_lead_phones.recency_rank = 1
    group by
        manual_lead_events.identity_key,
        manual_lead_events.identity_type,
        manual_lead_events.source_id
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
