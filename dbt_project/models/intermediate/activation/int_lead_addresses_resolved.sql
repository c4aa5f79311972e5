{#
    Where each lead can be reached, one row per lead and channel (email, whatsapp, chatbot):
    - email: the lead's normalized email (dim_leads.email);
    - whatsapp: the lead's E.164 phone (dim_leads.phone_e164), unless another lead has the same
      number (an office line): a message there could reach the wrong person, so it is `shared`;
    - chatbot: the chatbot user id on the person's latest inbound chatbot message (a conversation the
      person started), attributed to the lead by int_events_attributed.
    address_status: ok | missing | shared.
#}

with

leads as (
    select * from {{ ref('dim_leads') }}
),

chatbot_messages as (
    select * from {{ ref('stg_engagement__chatbot_messages') }}
),

attributed_events as (
    select * from {{ ref('int_events_attributed') }}
),

phone_owners as (
    select
        phone_e164,
        count(*) as lead_count
    from leads
    where phone_e164 is not null
    group by phone_e164
),

chatbot_users as (
    select
        attributed_events.lead_id,
        chatbot_messages.user_id,
        row_number() over (
            partition by attributed_events.lead_id
            order by chatbot_messages.occurred_at desc, chatbot_messages.event_id desc
        ) as recency_rank
    from chatbot_messages
    -- int_events_attributed holds events up to as_of only
    inner join attributed_events
        on chatbot_messages.event_id = attributed_events.event_id
    where
        chatbot_messages.direction = 'inbound'
        and chatbot_messages.user_id is not null
        and attributed_events.lead_id is not null
),

email_addresses as (
    select
        lead_id,
        'email' as channel,
        email as recipient,
        case when email is null then 'missing' else 'ok' end as address_status,
        case when email is null then 'the lead has no email address' end as address_detail
    from leads
),

whatsapp_addresses as (
    select
        leads.lead_id,
        'whatsapp' as channel,
        leads.phone_e164 as recipient,
        case
            when leads.phone_e164 is null then 'missing'
            when phone_owners.lead_count > 1 then 'shared'
            else 'ok'
        end as address_status,
        case
            when leads.phone_e164 is null then 'the lead has no phone number in E.164 form'
            when phone_owners.lead_count > 1
                then 'phone ' || leads.phone_e164 || ' belongs to '
                    || cast(phone_owners.lead_count as text) || ' leads'
        end as address_detail
    from leads
    left join phone_owners
        on leads.phone_e164 = phone_owners.phone_e164
),

chatbot_addresses as (
    select
        leads.lead_id,
        'chatbot' as channel,
        chatbot_users.user_id as recipient,
        case when chatbot_users.user_id is null then 'missing' else 'ok' end as address_status,
        case
            when chatbot_users.user_id is null then 'the lead never wrote to the chatbot'
        end as address_detail
    from leads
    left join chatbot_users
        on
            leads.lead_id = chatbot_users.lead_id
            and chatbot_users.recency_rank = 1
),

final as (
    select * from email_addresses
    union all
    select * from whatsapp_addresses
    union all
    select * from chatbot_addresses
)

select * from final
