{#
    Every value an event can be attributed by (int_events_attributed), with the lead it resolves to:
      identity   an identity_key (the event's own product / manual identity, or its account
                 'product_user:<user_id>') -> that identity's lead
      lead       a lead_id the Lead Tracker API stamped on an event -> the lead, while it exists
      email      a normalized email -> the lead of that email (identities matched by email)
      phone      an E.164 phone -> the only lead with it (a phone shared by two leads identifies neither)

    Incremental: each build compares the current lookups with the stored ones and rewrites only those
    that changed, stamped with the build's start (changed_at); a lookup that no longer resolves stays
    with a null lead_id. int_events_attributed re-attributes exactly the events whose lookups changed
    since its own last build: an identity merge moves the old events of both leads, nothing else.
#}

{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key=['lookup_kind', 'lookup_value'],
    on_schema_change='fail',
) }}

with

identities as (
    select * from {{ ref('int_lead_identities') }}
),

current_lookups as (
    select
        'identity' as lookup_kind,
        identity_key as lookup_value,
        lead_id
    from identities
    union all
    select distinct
        'lead' as lookup_kind,
        lead_id as lookup_value,
        lead_id
    from identities
    union all
    select distinct
        'email' as lookup_kind,
        email as lookup_value,
        lead_id
    from identities
    where match_reason = 'email'
    union all
    select
        'phone' as lookup_kind,
        phone_e164 as lookup_value,
        min(lead_id) as lead_id
    from identities
    where phone_e164 is not null
    group by phone_e164
    having count(distinct lead_id) = 1
),

changed_lookups as (
    {%- if is_incremental() %}
        select
            coalesce(current_lookups.lookup_kind, stored.lookup_kind) as lookup_kind,
            coalesce(current_lookups.lookup_value, stored.lookup_value) as lookup_value,
            current_lookups.lead_id
        from current_lookups
        full outer join {{ this }} as stored
            on
                current_lookups.lookup_kind = stored.lookup_kind
                and current_lookups.lookup_value = stored.lookup_value
        where current_lookups.lead_id is distinct from stored.lead_id
    {%- else %}
        select * from current_lookups
    {%- endif %}
),

final as (
    select
        lookup_kind,
        lookup_value,
        lead_id,
        {{ leadflow.build_started_at() }} as changed_at
    from changed_lookups
)

select * from final
