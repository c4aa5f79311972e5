{#
    Consent decisions recorded by hand through the Lead Tracker API (stream `manual`,
    POST /leads/{id}/events), which stamps properties.lead_id:
    - `do_not_contact` / `contact_allowed`: suppress / lift a suppression, for properties.channel
      (`email`, `whatsapp`, `chatbot`) or every channel when absent;
    - `whatsapp_opt_in` / `whatsapp_opt_out`: an opt-in or opt-out collected outside WhatsApp
      (a signed form, a call).
#}

with

source as (
    select * from {{ source('events', 'events') }}
),

consent_events as (
    select * from source
    where
        stream = 'manual'
        and lower(trim(event_type)) in (
            'do_not_contact', 'contact_allowed', 'whatsapp_opt_in', 'whatsapp_opt_out'
        )
),

renamed as (
    select
        cast(event_id as text) as event_id,
        lower({{ leadflow.clean_text('event_type') }}) as event_type,
        occurred_at,
        {{ leadflow.normalize_email('email') }} as email,
        {{ leadflow.normalize_phone_e164('phone') }} as phone_e164,
        cast(properties as text) as properties,
        landing_file,
        cast(line_number as bigint) as line_number
    from consent_events
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
        email,
        phone_e164,
        {{ leadflow.clean_text(leadflow.json_text_field('properties', 'lead_id')) }} as lead_id,
        case
            when event_type in ('whatsapp_opt_in', 'whatsapp_opt_out') then 'whatsapp'
            else lower({{ leadflow.clean_text(leadflow.json_text_field('properties', 'channel')) }})
        end as channel,
        {{ leadflow.clean_text(leadflow.json_text_field('properties', 'reason')) }} as consent_reason,
        properties
    from ranked
    where load_rank = 1
)

select * from final
