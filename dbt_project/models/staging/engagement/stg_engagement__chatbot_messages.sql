{#
    Chatbot conversation messages (stream `chatbot`): `chatbot_inbound` (written by the person) and
    `chatbot_outbound` (sent by the bot), with the chatbot user id the bot addresses people by.
#}

with

source as (
    select * from {{ source('events', 'events') }}
),

chatbot as (
    select * from source
    where stream = 'chatbot'
),

renamed as (
    select
        cast(event_id as text) as event_id,
        lower({{ leadflow.clean_text('event_type') }}) as event_type,
        occurred_at,
        lower({{ leadflow.clean_text('product_id') }}) as product_id,
        {{ leadflow.normalize_email('email') }} as email,
        {{ leadflow.normalize_phone_e164('phone') }} as phone_e164,
        {{ leadflow.clean_text('cast(user_id as text)') }} as user_id,
        cast(properties as text) as properties,
        landing_file,
        cast(line_number as bigint) as line_number
    from chatbot
),

ranked as (
    select
        *,
        row_number() over (
            partition by event_id order by landing_file desc, line_number desc
        ) as load_rank
    from renamed
),

final as (
    select
        event_id,
        event_type,
        replace(event_type, 'chatbot_', '') as direction,
        occurred_at,
        product_id,
        email,
        phone_e164,
        user_id,
        {{ leadflow.clean_text(leadflow.json_text_field('properties', 'message_id')) }} as message_id,
        {{ leadflow.clean_text(leadflow.json_text_field('properties', 'conversation_id')) }}
            as conversation_id,
        {{ leadflow.json_text_field('properties', 'text') }} as message_text,
        properties
    from ranked
    where load_rank = 1
)

select * from final
