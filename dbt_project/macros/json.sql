{#
    One top-level field of a JSON document stored as text, returned as text (null when absent).
    raw_events.events.properties is JSON text on both warehouses (see ARCHITECTURE.md).
#}
{% macro json_text_field(column, key) -%}
    {{ return(adapter.dispatch('json_text_field', 'leadflow')(column, key)) }}
{%- endmacro %}

{% macro default__json_text_field(column, key) -%}
    cast({{ column }} as jsonb) ->> '{{ key }}'
{%- endmacro %}

{% macro duckdb__json_text_field(column, key) -%}
    json_extract_string({{ column }}, '$.{{ key }}')
{%- endmacro %}
