{#
    Every channel a candidate message could use, in the product's order of preference
    (products.channels), with whether it may be used (an address, consent, no suppression) and
    how: email, chatbot_text, or on WhatsApp free-form text (whatsapp_text) when the person wrote
    within activation_whatsapp_session_hours before due_at, else an approved template
    (whatsapp_template). usable_rank numbers the usable channels (1 = the route the message takes,
    2.. = n8n's failover routes).
#}

-- a table, not a view: the send list, the exclusions mart and this model's tests each read it, and a view
-- would recompute the candidate chain for every one of them
{{ config(materialized='table') }}

with

candidates as (
    select * from {{ ref('int_message_candidates_scheduled') }}
),

consents as (
    select * from {{ ref('int_lead_consents_evaluated') }}
),

-- products.channels lists at most the three known channels (seed test)
channel_slots as (
    select 1 as channel_preference
    union all
    select 2 as channel_preference
    union all
    select 3 as channel_preference
),

options as (
    select
        candidates.idempotency_key,
        candidates.lead_id,
        candidates.product_id,
        candidates.workflow,
        candidates.step,
        candidates.due_at,
        channel_slots.channel_preference,
        split_part(candidates.channels, '|', channel_slots.channel_preference) as channel
    from candidates
    cross join channel_slots
    where split_part(candidates.channels, '|', channel_slots.channel_preference) != ''
),

evaluated as (
    select
        options.*,
        consents.recipient,
        coalesce(consents.is_contactable, false) as is_usable,
        case
            when consents.lead_id is null then 'no_consent'
            else consents.block_reason
        end as block_reason,
        case
            when consents.lead_id is null then 'no consent record for this lead and channel'
            else consents.block_detail
        end as block_detail,
        consents.last_inbound_at,
        case options.channel
            when 'email' then 'email'
            when 'chatbot' then 'chatbot_text'
            when 'whatsapp' then
                case
                    when
                        consents.last_inbound_at <= options.due_at
                        and consents.last_inbound_at
                        > options.due_at - interval '{{ var("activation_whatsapp_session_hours") }} hours'
                        then 'whatsapp_text'
                    else 'whatsapp_template'
                end
        end as message_type
    from options
    left join consents
        on
            options.lead_id = consents.lead_id
            and options.channel = consents.channel
),

final as (
    select
        idempotency_key,
        lead_id,
        product_id,
        workflow,
        step,
        channel,
        channel_preference,
        recipient,
        message_type,
        is_usable,
        block_reason,
        block_detail,
        last_inbound_at,
        case
            when is_usable
                then row_number() over (
                        partition by idempotency_key, is_usable order by channel_preference
                    )
        end as usable_rank
    from evaluated
)

select * from final
