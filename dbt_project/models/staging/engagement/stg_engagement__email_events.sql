{#
    SendGrid Event Webhook events (stream `sendgrid`, event types `email_<event>`), one row per event,
    with the fields the consent rules read pulled out of the provider's JSON: a hard bounce is a
    `bounce` whose `type` is `bounce` (SendGrid's `blocked` is a soft, per-message refusal), group
    (un)subscribes carry the ASM group id, and custom_args (idempotency_key) arrive as top-level keys.
#}

with

source as (
    select * from {{ source('events', 'events') }}
),

sendgrid as (
    select * from source
    where stream = 'sendgrid'
),

renamed as (
    select
        cast(event_id as text) as event_id,
        lower({{ leadflow.clean_text('event_type') }}) as event_type,
        occurred_at,
        lower({{ leadflow.clean_text('product_id') }}) as product_id,
        coalesce(
            {{ leadflow.normalize_email('email') }},
            {{ leadflow.normalize_email(leadflow.json_text_field('properties', 'email')) }}
        ) as email,
        cast(properties as text) as properties,
        landing_file,
        cast(line_number as bigint) as line_number
    from sendgrid
),

-- one copy per event_id, from the latest landing line (as stg_events__events)
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
        coalesce(
            lower({{ leadflow.clean_text(leadflow.json_text_field('properties', 'event')) }}),
            replace(event_type, 'email_', '')
        ) as sendgrid_event,
        occurred_at,
        product_id,
        email,
        {{ leadflow.clean_text(leadflow.json_text_field('properties', 'sg_message_id')) }} as sg_message_id,
        {{ leadflow.clean_text(leadflow.json_text_field('properties', 'idempotency_key')) }}
            as idempotency_key,
        lower({{ leadflow.clean_text(leadflow.json_text_field('properties', 'type')) }}) as bounce_type,
        {{ leadflow.clean_text(leadflow.json_text_field('properties', 'asm_group_id')) }} as asm_group_id,
        {{ leadflow.clean_text(leadflow.json_text_field('properties', 'reason')) }} as provider_reason,
        properties
    from ranked
    where load_rank = 1
)

select * from final
