{#
    Deterministic keys shared with Python: md5 over UTF-8 text, lower-case hex, so that
    hashlib.md5(text.encode()).hexdigest() reproduces any key computed here.
#}

{% macro md5_hex(expression) -%}
    {{ return(adapter.dispatch('md5_hex', 'leadflow')(expression)) }}
{%- endmacro %}

{% macro default__md5_hex(expression) -%}
    md5({{ expression }})
{%- endmacro %}

{% macro duckdb__md5_hex(expression) -%}
    {#- DuckDB's md5() also takes BLOB; the cast pins the VARCHAR overload (UTF-8 bytes). -#}
    md5(cast({{ expression }} as varchar))
{%- endmacro %}

{% macro postgres__md5_hex(expression) -%}
    md5(cast({{ expression }} as text))
{%- endmacro %}


{#
    hash_key(['lead_id', 'product_id', "'once'"]) -> md5 of the parts joined by '|', nulls as ''.
    Python equivalent: hashlib.md5("|".join(parts).encode()).hexdigest().
#}
{% macro hash_key(parts) -%}
    {%- set texts = [] -%}
    {%- for part in parts -%}
        {%- do texts.append("coalesce(cast(" ~ part ~ " as " ~ dbt.type_string() ~ "), '')") -%}
    {%- endfor -%}
    {{ leadflow.md5_hex(texts | join(" || '|' || ")) }}
{%- endmacro %}


{#
    lead_id per ARCHITECTURE.md: md5 of 'email:<normalized email>', else 'phone:<e164>',
    else 'crm:<contact id>' / 'user:<user id>'. `lead_key` is that text before hashing.
#}
{% macro lead_id_from_key(lead_key) -%}
    {{ leadflow.md5_hex(lead_key) }}
{%- endmacro %}


{#
    A 64-bit integer hash of a text, for order-free digests (sum over a group's rows): only ever
    compared with a digest computed by the same warehouse, never with Python.
#}
{% macro text_hash64(expression) -%}
    {{ return(adapter.dispatch('text_hash64', 'leadflow')(expression)) }}
{%- endmacro %}

{% macro default__text_hash64(expression) -%}
    hashtextextended({{ expression }}, 0)
{%- endmacro %}

{% macro duckdb__text_hash64(expression) -%}
    hash({{ expression }})
{%- endmacro %}
