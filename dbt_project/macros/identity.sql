{#
    The key of the product user an event belongs to: the account (user_id) when the product sent
    one, else the address the event carried. int_lead_identities maps each such key to a lead_id,
    and fct_engagement_events joins events back through the same expression.
#}
{% macro product_identity_key(user_id, email, phone_e164) -%}
    case
        when {{ user_id }} is not null then 'product_user:' || {{ user_id }}
        when {{ email }} is not null then 'product_email:' || {{ email }}
        when {{ phone_e164 }} is not null then 'product_phone:' || {{ phone_e164 }}
    end
{%- endmacro %}


{#
    The key of the manual lead a `lead_upserted` event of the manual stream or source is
    (int_lead_identities): its email, else its phone.
#}
{% macro manual_identity_key(email, phone_e164) -%}
    case
        when {{ email }} is not null then 'manual_email:' || {{ email }}
        when {{ phone_e164 }} is not null then 'manual_phone:' || {{ phone_e164 }}
    end
{%- endmacro %}


{# Whether an event (columns of int_events_landed) is a manual lead upsert with an address. #}
{% macro is_manual_lead_event() -%}
    (event_type = 'lead_upserted' and (stream = 'manual' or event_source = 'manual')
    and coalesce(email, phone_e164) is not null)
{%- endmacro %}
