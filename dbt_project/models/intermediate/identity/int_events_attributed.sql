{#
    Every event of every stream up to as_of, with the lead it belongs to. Product events and manual
    lead upserts are identities themselves (int_lead_identities); any other event (a stage override,
    a delivery receipt …) only attaches to a lead that already exists, in this order: the product
    account it names (user_id), the lead the Lead Tracker API stamped on it (properties.lead_id),
    the lead of its email, the only lead with its phone. Events matching none get no lead_id;
    attributed_by says which rule found the lead. Every lookup goes through
    int_attribution_keys_resolved.

    Incremental: (re)attributes only the events that are new or changed (int_events_landed stamps),
    newly inside as_of (later than any event held), or whose lookups changed since this model's last
    build (an identity merge, a new CRM contact, a phone that became shared); events now after as_of
    are deleted first. attributed_at stamps the rows a build wrote.
#}

{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='event_id',
    on_schema_change='fail',
    pre_hook="{% if is_incremental() %}delete from {{ this }} where occurred_at > {{ leadflow.as_of() }}{% endif %}",
) }}

with

landed as (
    select * from {{ ref('int_events_landed') }}
    where occurred_at <= {{ leadflow.as_of() }}
),

lookups as (
    select * from {{ ref('int_attribution_keys_resolved') }}
    where lead_id is not null
),

{% if is_incremental() -%}
held as (
    select
        coalesce(max(attributed_at), {{ leadflow.timestamp_literal('1900-01-01T00:00:00+00:00') }})
            as attributed_until,
        coalesce(max(occurred_at), {{ leadflow.timestamp_literal('1900-01-01T00:00:00+00:00') }})
            as newest_event_at
    from {{ this }}
),

changed_lookups as (
    select
        lookup_kind,
        lookup_value
    from {{ ref('int_attribution_keys_resolved') }}
    where changed_at > (select held.attributed_until from held)
),

changed_identities as (
    select lookup_value from changed_lookups where lookup_kind = 'identity'
),

changed_accounts as (
    select substr(lookup_value, length('product_user:') + 1) as user_id
    from changed_lookups
    where lookup_kind = 'identity' and left(lookup_value, length('product_user:')) = 'product_user:'
),

changed_leads as (
    select lookup_value from changed_lookups where lookup_kind = 'lead'
),

changed_emails as (
    select lookup_value from changed_lookups where lookup_kind = 'email'
),

changed_phones as (
    select lookup_value from changed_lookups where lookup_kind = 'phone'
),

{%- endif %}

events as (
    select landed.*
    from landed
    {%- if is_incremental() %}
        where
            landed.landed_at > (select held.attributed_until from held)
            or landed.occurred_at > (select held.newest_event_at from held)
            or landed.own_identity_key in (select changed_identities.lookup_value from changed_identities)
            or landed.user_id in (select changed_accounts.user_id from changed_accounts)
            or landed.properties_lead_id in (select changed_leads.lookup_value from changed_leads)
            or landed.email in (select changed_emails.lookup_value from changed_emails)
            or landed.phone_e164 in (select changed_phones.lookup_value from changed_phones)
    {%- endif %}
),

attributed as (
    select
        events.*,
        coalesce(
            own_identity.lead_id,
            product_account.lead_id,
            stamped_lead.lead_id,
            email_lead.lead_id,
            phone_lead.lead_id
        ) as lead_id,
        case
            when own_identity.lead_id is not null then 'identity'
            when product_account.lead_id is not null then 'user_id'
            when stamped_lead.lead_id is not null then 'properties_lead_id'
            when email_lead.lead_id is not null then 'email'
            when phone_lead.lead_id is not null then 'phone'
        end as attributed_by
    from events
    left join lookups as own_identity
        on own_identity.lookup_kind = 'identity' and events.own_identity_key = own_identity.lookup_value
    left join lookups as product_account
        on
            product_account.lookup_kind = 'identity'
            and 'product_user:' || events.user_id = product_account.lookup_value
    left join lookups as stamped_lead
        on stamped_lead.lookup_kind = 'lead' and events.properties_lead_id = stamped_lead.lookup_value
    left join lookups as email_lead
        on email_lead.lookup_kind = 'email' and events.email = email_lead.lookup_value
    left join lookups as phone_lead
        on phone_lead.lookup_kind = 'phone' and events.phone_e164 = phone_lead.lookup_value
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
        properties_product_id,
        {{ leadflow.build_started_at() }} as attributed_at
    from attributed
)

select * from final
