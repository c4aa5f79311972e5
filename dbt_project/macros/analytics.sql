{#
    Analytics helpers (models/marts/analytics). Warehouse differences go through adapter.dispatch.
#}

{#
    Continuous percentile (linear interpolation between the two nearest ranks) of `expression` as an
    aggregate, `fraction` in [0, 1]. PostgreSQL's percentile_cont and DuckDB's quantile_cont compute
    the same interpolation, so both warehouses return the same number
    (Python: statistics.quantiles(..., method='inclusive') / numpy.percentile default).
#}
{% macro percentile_cont(expression, fraction) -%}
    {{ return(adapter.dispatch('percentile_cont', 'leadflow')(expression, fraction)) }}
{%- endmacro %}

{% macro default__percentile_cont(expression, fraction) -%}
    percentile_cont({{ fraction }}) within group (order by {{ expression }})
{%- endmacro %}

{% macro duckdb__percentile_cont(expression, fraction) -%}
    quantile_cont({{ expression }}, {{ fraction }})
{%- endmacro %}


{# The UTC Monday (a date) of the ISO week a timestamptz falls in: weekly cohorts never follow the session zone. #}
{% macro utc_week_start(column) -%}
    {{ return(adapter.dispatch('utc_week_start', 'leadflow')(column)) }}
{%- endmacro %}

{% macro default__utc_week_start(column) -%}
    cast(date_trunc('week', {{ column }} at time zone 'UTC') as date)
{%- endmacro %}

{% macro duckdb__utc_week_start(column) -%}
    cast(date_trunc('week', timezone('UTC', {{ column }})) as date)
{%- endmacro %}


{#
    A deterministic number in [0, 1) from text: the first 8 hex digits of its md5 over 16^8.
    Python: int(hashlib.md5(text.encode()).hexdigest()[:8], 16) / 2**32.
#}
{% macro unit_hash(expression) -%}
    (({{ adapter.dispatch('hex8_to_bigint', 'leadflow')('substr(' ~ leadflow.md5_hex(expression) ~ ', 1, 8)') }})
        / 4294967296.0)
{%- endmacro %}

{% macro default__hex8_to_bigint(hex_text) -%}
    cast(cast(('x' || {{ hex_text }}) as bit(32)) as bigint)
{%- endmacro %}

{% macro duckdb__hex8_to_bigint(hex_text) -%}
    cast(('0x' || {{ hex_text }}) as bigint)
{%- endmacro %}
