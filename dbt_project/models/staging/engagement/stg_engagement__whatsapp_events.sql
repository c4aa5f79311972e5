{#
    WhatsApp Cloud API notifications (stream `whatsapp`): delivery statuses (`whatsapp_sent`,
    `whatsapp_delivered`, `whatsapp_read`, `whatsapp_failed`) and messages the person wrote
    (`whatsapp_inbound`, or `whatsapp_opt_out` / `whatsapp_opt_in` for STOP / START keywords, which
    intake classifies). Every message the person wrote opens WhatsApp's 24-hour service window.
#}

with

source as (
    select * from {{ source('events', 'events') }}
),

whatsapp as (
    select * from source
    where stream = 'whatsapp'
),

renamed as (
    select
        cast(event_id as text) as event_id,
        lower({{ leadflow.clean_text('event_type') }}) as event_type,
        occurred_at,
        lower({{ leadflow.clean_text('product_id') }}) as product_id,
        {{ leadflow.normalize_phone_e164('phone') }} as phone_e164,
        cast(properties as text) as properties,
        landing_file,
        cast(line_number as bigint) as line_number
    from whatsapp
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
        occurred_at,
        product_id,
        phone_e164,
        event_type in ('whatsapp_inbound', 'whatsapp_opt_out', 'whatsapp_opt_in') as is_inbound,
        {{ leadflow.clean_text(leadflow.json_text_field('properties', 'id')) }} as whatsapp_message_id,
        lower({{ leadflow.clean_text(leadflow.json_text_field('properties', 'status')) }}) as delivery_status,
        lower({{ leadflow.clean_text(leadflow.json_text_field('properties', 'type')) }}) as message_kind,
        {{ leadflow.json_text_path('properties', ['text', 'body']) }} as message_text,
        {{ leadflow.clean_text(leadflow.json_text_path('properties', ['errors', 0, 'code'])) }} as error_code,
        properties
    from ranked
    where load_rank = 1
)

select * from final
