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

    Incremental: recomputes the identities touched since this model's last build (events landed
    since, or newly inside as_of; identities with events after an earlier as_of; CRM contacts that
    are new, changed or gone), then rewrites every identity of each lead they belong to now or
    belonged to (the `replace_by_key` strategy on lead_key), so the per-lead merge columns stay right.
    identified_at stamps the rows a build wrote. A replaced event (a later landing line of a known id)
    recomputes every identity: its old version's identity is not known any more.
#}

{{ config(
    materialized='incremental',
    incremental_strategy='replace_by_key',
    unique_key=['lead_key'],
    meta={'placeholder_marker': 'identity_key'},
    on_schema_change='fail',
) }}

with

contacts as (
    select * from {{ ref('stg_crm__contacts') }}
),

landed as (
    select * from {{ ref('int_events_landed') }}
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

{% if is_incremental() -%}
held as (
    select
        coalesce(max(identified_at), {{ leadflow.timestamp_literal('1900-01-01T00:00:00+00:00') }})
            as identified_until,
        coalesce(
            max(case when identity_source <> 'crm_contact' then last_seen_at end),
            {{ leadflow.timestamp_literal('1900-01-01T00:00:00+00:00') }}
        ) as newest_event_at
    from {{ this }}
),

-- events that may have changed an identity since this model's last build: landed since, or newly
-- inside as_of (later than any event held); after a replaced event, every event
changed_events as (
    select landed.*
    from landed
    where
        landed.occurred_at <= {{ leadflow.as_of() }}
        and (
            landed.landed_at > (select held.identified_until from held)
            or landed.occurred_at > (select held.newest_event_at from held)
            or exists (
                select 1
                from landed as replaced
                where
                    replaced.is_replacement
                    and replaced.landed_at > (select held.identified_until from held)
            )
        )
),

stored_crm_identities as (
    select * from {{ this }}
    where identity_source = 'crm_contact'
),

touched_keys as (
    select {{ leadflow.product_identity_key('user_id', 'email', 'phone_e164') }} as identity_key
    from changed_events
    where stream = 'product_events'
    union
    select {{ leadflow.manual_identity_key('email', 'phone_e164') }} as identity_key
    from changed_events
    where {{ leadflow.is_manual_lead_event() }}
    union
    -- as_of moved back: identities that held events now after it
    select identity_key
    from {{ this }}
    where identity_source <> 'crm_contact' and last_seen_at > {{ leadflow.as_of() }}
    union
    -- CRM contacts that are new, changed or gone
    select coalesce(crm_identities.identity_key, stored_crm_identities.identity_key) as identity_key
    from crm_identities
    full outer join stored_crm_identities
        on crm_identities.identity_key = stored_crm_identities.identity_key
    where
        crm_identities.identity_key is null
        or stored_crm_identities.identity_key is null
        or crm_identities.email is distinct from stored_crm_identities.email
        or crm_identities.phone_e164 is distinct from stored_crm_identities.phone_e164
        or crm_identities.first_seen_at is distinct from stored_crm_identities.first_seen_at
        or crm_identities.last_seen_at is distinct from stored_crm_identities.last_seen_at
),
{%- endif %}

-- events after as_of do not exist yet for the lead model (LEAD_MODEL.md, Time)
product_events as (
    select landed.*
    from landed
    where
        landed.stream = 'product_events'
        and landed.own_identity_key is not null
        and landed.occurred_at <= {{ leadflow.as_of() }}
),

manual_lead_events as (
    select
        occurred_at,
        event_id,
        email,
        phone_e164,
        {{ leadflow.manual_identity_key('email', 'phone_e164') }} as identity_key,
        case when email is not null then 'email' else 'phone' end as identity_type,
        coalesce(email, phone_e164) as source_id
    from landed
    where
        {{ leadflow.is_manual_lead_event() }}
        and occurred_at <= {{ leadflow.as_of() }}
),

-- a product user takes its latest email / phone seen on any of its events (aggregates, no sort of
-- all events)
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
    from product_events
    {%- if is_incremental() %}
        where own_identity_key in (select touched_keys.identity_key from touched_keys)
    {%- endif %}
    group by own_identity_key
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
    {%- if is_incremental() %}
        where identity_key in (select touched_keys.identity_key from touched_keys)
    {%- endif %}
    group by identity_key, identity_type, source_id
),

identities as (
    select * from crm_identities
    {%- if is_incremental() %}
        where identity_key in (select touched_keys.identity_key from touched_keys)
    {%- endif %}
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

{% if is_incremental() -%}
-- every lead a touched identity belongs to now or belonged to: all its identities are rewritten
touched_lead_keys as (
    select lead_key from keyed
    union
    select lead_key
    from {{ this }}
    where identity_key in (select touched_keys.identity_key from touched_keys)
),
{%- endif %}

members as (
    select
        identity_key,
        identity_source,
        identity_type,
        source_id,
        email,
        phone_e164,
        first_seen_at,
        last_seen_at,
        match_reason,
        lead_key
    from keyed
    {%- if is_incremental() %}
        union all
        select
            identity_key,
            identity_source,
            identity_type,
            source_id,
            email,
            phone_e164,
            first_seen_at,
            last_seen_at,
            match_reason,
            lead_key
        from {{ this }}
        where
            lead_key in (select touched_lead_keys.lead_key from touched_lead_keys)
            and identity_key not in (select touched_keys.identity_key from touched_keys)
    {%- endif %}
),

leads as (
    select
        lead_key,
        count(*) as identities_in_lead,
        string_agg(identity_key, ', ' order by {{ leadflow.codepoint_order('identity_key') }})
            as merged_identity_keys
    from members
    group by lead_key
),

final as (
    select
        members.identity_key,
        members.identity_source,
        members.identity_type,
        members.source_id,
        members.email,
        members.phone_e164,
        members.lead_key,
        {{ leadflow.lead_id_from_key('members.lead_key') }} as lead_id,
        members.match_reason,
        leads.identities_in_lead,
        case
            when leads.identities_in_lead > 1 and members.match_reason = 'email'
                then 'same normalized email ' || members.email
            when leads.identities_in_lead > 1 and members.match_reason = 'phone'
                then 'same E.164 phone ' || members.phone_e164 || ' (no email)'
        end as merge_reason,
        leads.merged_identity_keys,
        members.first_seen_at,
        members.last_seen_at,
        {{ leadflow.build_started_at() }} as identified_at
    from members
    inner join leads
        on members.lead_key = leads.lead_key
    {%- if is_incremental() %}
        -- a lead left without identities: one placeholder row clears it
        union all
        select
            null as identity_key,
            null as identity_source,
            null as identity_type,
            null as source_id,
            null as email,
            null as phone_e164,
            touched_lead_keys.lead_key,
            null as lead_id,
            null as match_reason,
            null as identities_in_lead,
            null as merge_reason,
            null as merged_identity_keys,
            null as first_seen_at,
            null as last_seen_at,
            null as identified_at
        from touched_lead_keys
        where touched_lead_keys.lead_key not in (select leads.lead_key from leads)
    {%- endif %}
)

select * from final
