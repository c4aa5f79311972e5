{#
    Normalization shared by every staging model, so a CRM contact and a product event with the
    same address always meet on the same value.
#}

{# trim + lower; blank becomes null. #}
{% macro normalize_email(column) -%}
    nullif(lower(trim({{ column }})), '')
{%- endmacro %}


{# trim; blank becomes null (ids, free text). #}
{% macro clean_text(column) -%}
    nullif(trim({{ column }}), '')
{%- endmacro %}


{#
    A phone written in international form ('+44 20 7946 0000', '+1 (555) 123-0000') becomes E.164
    ('+442079460000'). Anything without a leading '+' needs a default region to parse, which only
    ingestion knows (it uses phonenumbers for CRM contacts), so it stays null here rather than guessed.
#}
{% macro normalize_phone_e164(column) -%}
    {%- set digits = "regexp_replace(" ~ column ~ ", '[^0-9]', '', 'g')" -%}
    case
        when
            left(trim({{ column }}), 1) = '+'
            and length({{ digits }})
            between {{ var('phone_e164_min_digits') }} and {{ var('phone_e164_max_digits') }}
            then '+' || {{ digits }}
    end
{%- endmacro %}
