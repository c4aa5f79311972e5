{#
    May this lead be messaged on this channel, and if not, why: one row per lead and channel.
    Evidence up to as_of only. Suppressions follow the ADDRESS (a SendGrid unsubscribe, spam report
    or hard bounce blocks that email address; STOP blocks that WhatsApp number) or the lead itself
    (CRM opt-out, manual suppressions, Lead Tracker decisions). Permission never crosses people: a
    WhatsApp opt-in counts only from the lead's own number (a number shared by two leads is not
    used at all) or a decision recorded for that lead, and the lead's CRM opt-out is dim_leads'
    roll-up over the lead's own CRM records.

    block_reason, first match wins: no_address, shared_address, manual_suppression, spam_report,
    unsubscribed, group_unsubscribed, crm_opt_out, hard_bounce (email); whatsapp_opt_out,
    whatsapp_no_opt_in (whatsapp); no_consent (a channel without rules). Null = contactable.
#}

with

addresses as (
    select * from {{ ref('int_lead_addresses_resolved') }}
),

leads as (
    select * from {{ ref('dim_leads') }}
),

email_events as (
    select * from {{ ref('stg_engagement__email_events') }}
    where occurred_at <= {{ leadflow.as_of() }} and email is not null
),

whatsapp_events as (
    select * from {{ ref('stg_engagement__whatsapp_events') }}
    where occurred_at <= {{ leadflow.as_of() }} and phone_e164 is not null
),

manual_consent_events as (
    select * from {{ ref('stg_engagement__manual_consent_events') }}
),

attributed_events as (
    select * from {{ ref('int_events_attributed') }}
),

manual_suppressions as (
    select * from {{ ref('manual_suppressions') }}
),

-- SendGrid: its own suppression list shows as `dropped` with the list named in the reason
email_blocks as (
    select
        email,
        max(
            case
                when
                    sendgrid_event = 'spamreport'
                    or (sendgrid_event = 'dropped' and lower(provider_reason) like '%spam reporting address%')
                    then occurred_at
            end
        ) as spam_reported_at,
        max(
            case
                when
                    sendgrid_event = 'unsubscribe'
                    or (sendgrid_event = 'dropped' and lower(provider_reason) like '%unsubscribed address%')
                    then occurred_at
            end
        ) as unsubscribed_at,
        max(
            case
                when
                    (sendgrid_event = 'bounce' and coalesce(bounce_type, 'bounce') = 'bounce')
                    or (sendgrid_event = 'dropped' and lower(provider_reason) like '%bounced address%')
                    then occurred_at
            end
        ) as hard_bounced_at
    from email_events
    group by email
),

-- a group resubscribe lifts that group's unsubscribe: the latest event per (address, group) decides
group_events as (
    select
        email,
        asm_group_id,
        sendgrid_event,
        occurred_at,
        row_number() over (
            partition by email, coalesce(asm_group_id, '')
            order by occurred_at desc, event_id desc
        ) as recency_rank
    from email_events
    where sendgrid_event in ('group_unsubscribe', 'group_resubscribe')
),

group_unsubscribes as (
    select
        email,
        max(occurred_at) as group_unsubscribed_at,
        min(asm_group_id) as asm_group_id
    from group_events
    where recency_rank = 1 and sendgrid_event = 'group_unsubscribe'
    group by email
),

whatsapp_addresses as (
    select * from addresses
    where channel = 'whatsapp' and address_status = 'ok'
),

last_inbound as (
    select
        phone_e164,
        max(occurred_at) as last_inbound_at
    from whatsapp_events
    where is_inbound
    group by phone_e164
),

manual_events_attributed as (
    select
        attributed_events.lead_id,
        manual_consent_events.event_id,
        manual_consent_events.event_type,
        manual_consent_events.occurred_at,
        manual_consent_events.channel,
        manual_consent_events.consent_reason
    from manual_consent_events
    inner join attributed_events
        on manual_consent_events.event_id = attributed_events.event_id
    where attributed_events.lead_id is not null
),

-- opt-in / opt-out evidence per lead: keywords from the lead's own number, decisions recorded for the lead
whatsapp_consent_events as (
    select
        whatsapp_addresses.lead_id,
        whatsapp_events.event_type,
        whatsapp_events.occurred_at,
        whatsapp_events.event_id,
        'whatsapp keyword' as recorded_via
    from whatsapp_events
    inner join whatsapp_addresses
        on whatsapp_events.phone_e164 = whatsapp_addresses.recipient
    where whatsapp_events.event_type in ('whatsapp_opt_in', 'whatsapp_opt_out')
    union all
    select
        lead_id,
        event_type,
        occurred_at,
        event_id,
        'Lead Tracker' as recorded_via
    from manual_events_attributed
    where event_type in ('whatsapp_opt_in', 'whatsapp_opt_out')
),

whatsapp_consent_ranked as (
    select
        *,
        row_number() over (
            partition by lead_id order by occurred_at desc, event_id desc
        ) as recency_rank
    from whatsapp_consent_events
),

-- the latest word wins: STOP after START is an opt-out, START after STOP an opt-in again
whatsapp_consent as (
    select
        lead_id,
        event_type as latest_consent_event,
        occurred_at as latest_consent_at,
        recorded_via
    from whatsapp_consent_ranked
    where recency_rank = 1
),

-- Lead Tracker do_not_contact / contact_allowed: the latest decision per lead and scope ('*' = all)
manual_decisions as (
    select
        lead_id,
        coalesce(channel, '*') as channel_scope,
        event_type,
        occurred_at,
        consent_reason,
        row_number() over (
            partition by lead_id, coalesce(channel, '*')
            order by occurred_at desc, event_id desc
        ) as recency_rank
    from manual_events_attributed
    where event_type in ('do_not_contact', 'contact_allowed')
),

manual_blocks as (
    select
        lead_id,
        channel_scope,
        'Lead Tracker do_not_contact' || coalesce(': ' || consent_reason, '') as detail
    from manual_decisions
    where recency_rank = 1 and event_type = 'do_not_contact'
    union all
    select
        leads.lead_id,
        coalesce(manual_suppressions.channel, '*') as channel_scope,
        'manual_suppressions ' || manual_suppressions.suppression_id || ': ' || manual_suppressions.reason
            as detail
    from manual_suppressions
    inner join leads
        on
            manual_suppressions.lead_id = leads.lead_id
            or manual_suppressions.email = leads.email
            or manual_suppressions.phone_e164 = leads.phone_e164
    where manual_suppressions.suppressed_at <= {{ leadflow.as_of() }}
),

manual_blocks_per_channel as (
    select
        addresses.lead_id,
        addresses.channel,
        min(manual_blocks.detail) as detail
    from addresses
    inner join manual_blocks
        on
            addresses.lead_id = manual_blocks.lead_id
            and manual_blocks.channel_scope in ('*', addresses.channel)
    group by addresses.lead_id, addresses.channel
),

evaluated as (
    select
        addresses.lead_id,
        addresses.channel,
        addresses.recipient,
        addresses.address_status,
        case
            when addresses.address_status = 'missing' then 'no_address'
            when addresses.address_status = 'shared' then 'shared_address'
            when manual_blocks_per_channel.lead_id is not null then 'manual_suppression'
            when addresses.channel = 'email' and email_blocks.spam_reported_at is not null then 'spam_report'
            when addresses.channel = 'email' and email_blocks.unsubscribed_at is not null then 'unsubscribed'
            when addresses.channel = 'email' and group_unsubscribes.email is not null
                then 'group_unsubscribed'
            when addresses.channel = 'email' and leads.email_opt_out then 'crm_opt_out'
            when addresses.channel = 'email' and email_blocks.hard_bounced_at is not null then 'hard_bounce'
            when
                addresses.channel = 'whatsapp' and whatsapp_consent.latest_consent_event = 'whatsapp_opt_out'
                then 'whatsapp_opt_out'
            when addresses.channel = 'whatsapp' and whatsapp_consent.lead_id is null then 'whatsapp_no_opt_in'
            when addresses.channel not in ('email', 'whatsapp', 'chatbot') then 'no_consent'
        end as block_reason,
        addresses.address_detail,
        manual_blocks_per_channel.detail as manual_detail,
        email_blocks.spam_reported_at,
        email_blocks.unsubscribed_at,
        group_unsubscribes.group_unsubscribed_at,
        group_unsubscribes.asm_group_id,
        email_blocks.hard_bounced_at,
        whatsapp_consent.latest_consent_event,
        whatsapp_consent.latest_consent_at,
        whatsapp_consent.recorded_via,
        case when addresses.channel = 'whatsapp' then last_inbound.last_inbound_at end as last_inbound_at
    from addresses
    inner join leads
        on addresses.lead_id = leads.lead_id
    left join email_blocks
        on addresses.channel = 'email' and addresses.recipient = email_blocks.email
    left join group_unsubscribes
        on addresses.channel = 'email' and addresses.recipient = group_unsubscribes.email
    left join whatsapp_consent
        on addresses.channel = 'whatsapp' and addresses.lead_id = whatsapp_consent.lead_id
    left join last_inbound
        on addresses.channel = 'whatsapp' and addresses.recipient = last_inbound.phone_e164
    left join manual_blocks_per_channel
        on
            addresses.lead_id = manual_blocks_per_channel.lead_id
            and addresses.channel = manual_blocks_per_channel.channel
),

final as (
    select
        lead_id,
        channel,
        recipient,
        address_status,
        block_reason is null as is_contactable,
        block_reason,
        case block_reason
            when 'no_address' then address_detail
            when 'shared_address' then address_detail
            when 'manual_suppression' then manual_detail
            when 'spam_report' then 'SendGrid spam report from ' || recipient
            when 'unsubscribed' then 'SendGrid unsubscribe of ' || recipient
            when 'group_unsubscribed'
                then 'SendGrid unsubscribe of ' || recipient || ' from group ' || coalesce(asm_group_id, '?')
            when 'crm_opt_out' then 'CRM email opt-out (hs_email_optout) on a CRM record of the lead'
            when 'hard_bounce' then 'SendGrid hard bounce of ' || recipient
            when 'whatsapp_opt_out' then 'WhatsApp opt-out (' || recorded_via || ')'
            when 'whatsapp_no_opt_in' then 'no recorded WhatsApp opt-in for ' || recipient
            when 'no_consent' then 'no consent rule for channel ' || channel
        end as block_detail,
        case
            when latest_consent_event = 'whatsapp_opt_in' then latest_consent_at
        end as whatsapp_opted_in_at,
        last_inbound_at
    from evaluated
)

select * from final
