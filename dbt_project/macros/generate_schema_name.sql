{#
    Every model, seed and snapshot lands in the profile's schema (`analytics`) on both warehouses,
    as ARCHITECTURE.md fixes. dbt's default would prefix a custom schema (`analytics_staging`);
    a node that sets `schema:` explicitly gets exactly that schema instead.
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
