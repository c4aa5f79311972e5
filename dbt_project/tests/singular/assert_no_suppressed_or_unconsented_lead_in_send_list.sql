{#
    Blocking check before any send list leaves the warehouse (Dagster asset check): every route of
    send_list_messages (the primary channel and each failover route) is re-checked against the raw
    evidence, independently of the models that built the list. A row here is a message that would
    reach someone who unsubscribed, reported spam, hard-bounced, opted out in the CRM or on WhatsApp,
    never opted in to WhatsApp, is manually suppressed, or shares the WhatsApp number with another
    lead. Nothing may be sent until it is fixed.
#}

-- dagster-dbt attaches this test to send_list_messages as an asset check (it reads other models too)
{{ config(meta={'dagster': {'ref': {'name': 'send_list_messages'}}}) }}

with

send_list as (
    select * from {{ ref('send_list_messages') }}
),

leads as (
    select * from {{ ref('dim_leads') }}
),

email_events as (
    select * from {{ ref('stg_engagement__email_events') }}
    where occurred_at <= {{ leadflow.as_of() }}
),

whatsapp_events as (
    select * from {{ ref('stg_engagement__whatsapp_events') }}
    where occurred_at <= {{ leadflow.as_of() }}
),

manual_consent_events as (
    select * from {{ ref('stg_engagement__manual_consent_events') }}
    where occurred_at <= {{ leadflow.as_of() }}
),

manual_suppressions as (
    select * from {{ ref('manual_suppressions') }}
),

-- the primary route and up to two failover routes, one row each
routes as (
    select
        idempotency_key,
        lead_id,
        channel,
        recipient,
        0 as route_index
    from send_list
    {% for index in [1, 2] %}
        union all
        select
            idempotency_key,
            lead_id,
            split_part(fallback_channels, '|', {{ index }}) as channel,
            split_part(fallback_recipients, '|', {{ index }}) as recipient,
            {{ index }} as route_index
        from send_list
        where split_part(fallback_channels, '|', {{ index }}) != ''
    {% endfor %}
),

-- WhatsApp consent words for a route: keywords from its number, decisions recorded for its lead
whatsapp_words as (
    select
        routes.idempotency_key,
        routes.route_index,
        whatsapp_events.event_type,
        whatsapp_events.occurred_at
    from routes
    inner join whatsapp_events
        on routes.recipient = whatsapp_events.phone_e164
    where
        routes.channel = 'whatsapp'
        and whatsapp_events.event_type in ('whatsapp_opt_in', 'whatsapp_opt_out')
    union all
    select
        routes.idempotency_key,
        routes.route_index,
        manual_consent_events.event_type,
        manual_consent_events.occurred_at
    from routes
    inner join manual_consent_events
        on routes.lead_id = manual_consent_events.lead_id
    where
        routes.channel = 'whatsapp'
        and manual_consent_events.event_type in ('whatsapp_opt_in', 'whatsapp_opt_out')
),

whatsapp_last_word as (
    select
        idempotency_key,
        route_index,
        max(case when event_type = 'whatsapp_opt_in' then occurred_at end) as last_opt_in_at,
        max(case when event_type = 'whatsapp_opt_out' then occurred_at end) as last_opt_out_at
    from whatsapp_words
    group by idempotency_key, route_index
),

violations as (
    select
        routes.*,
        'no recipient' as violation
    from routes
    where routes.recipient is null or routes.recipient = ''

    union all
    select
        routes.*,
        'email ' || email_events.sendgrid_event as violation
    from routes
    inner join email_events
        on routes.recipient = email_events.email
    where
        routes.channel = 'email'
        and (
            email_events.sendgrid_event in ('unsubscribe', 'spamreport')
            or (
                email_events.sendgrid_event = 'bounce'
                and coalesce(email_events.bounce_type, 'bounce') = 'bounce'
            )
        )

    union all
    select
        routes.*,
        'CRM email opt-out' as violation
    from routes
    inner join leads
        on routes.lead_id = leads.lead_id
    where routes.channel = 'email' and leads.email_opt_out

    union all
    select
        routes.*,
        'WhatsApp opt-out or no opt-in' as violation
    from routes
    left join whatsapp_last_word
        on
            routes.idempotency_key = whatsapp_last_word.idempotency_key
            and routes.route_index = whatsapp_last_word.route_index
    where
        routes.channel = 'whatsapp'
        and (
            whatsapp_last_word.last_opt_in_at is null
            or whatsapp_last_word.last_opt_out_at >= whatsapp_last_word.last_opt_in_at
        )

    union all
    select
        routes.*,
        'WhatsApp number shared with another lead' as violation
    from routes
    inner join leads
        on routes.recipient = leads.phone_e164 and routes.lead_id != leads.lead_id
    where routes.channel = 'whatsapp'

    union all
    select
        routes.*,
        'manual suppression ' || manual_suppressions.suppression_id as violation
    from routes
    inner join leads
        on routes.lead_id = leads.lead_id
    inner join manual_suppressions
        on
            (
                routes.lead_id = manual_suppressions.lead_id
                or leads.email = manual_suppressions.email
                or leads.phone_e164 = manual_suppressions.phone_e164
            )
            and routes.channel = coalesce(manual_suppressions.channel, routes.channel)
)

select
    idempotency_key,
    lead_id,
    channel,
    recipient,
    route_index,
    violation
from violations
