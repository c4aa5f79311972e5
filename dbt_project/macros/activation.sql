{#
    Building blocks of the activation send lists (models/intermediate/activation, marts/activation):
    nested JSON fields of provider events, local time in a lead's time zone, quiet hours, ISO weeks.
    Every warehouse difference goes through adapter.dispatch; the numbers are dbt_project.yml vars.
#}


{#
    A nested field of a JSON document stored as text, as text (null when absent).
    path: list of keys and array indexes, e.g. ['errors', 0, 'code'] or ['text', 'body'].
#}
{% macro json_text_path(column, path) -%}
    {{ return(adapter.dispatch('json_text_path', 'leadflow')(column, path)) }}
{%- endmacro %}

{% macro default__json_text_path(column, path) -%}
    cast({{ column }} as jsonb) #>> '{ {{- path | join(",") -}} }'
{%- endmacro %}

{% macro duckdb__json_text_path(column, path) -%}
    {%- set parts = [] -%}
    {%- for key in path -%}
        {%- if key is number -%}
            {%- do parts.append("[" ~ key ~ "]") -%}
        {%- else -%}
            {%- do parts.append("." ~ key) -%}
        {%- endif -%}
    {%- endfor -%}
    json_extract_string({{ column }}, '${{ parts | join("") }}')
{%- endmacro %}


{#
    The IANA time zone names the warehouse knows (column `name`): a CRM time zone is only used when
    the warehouse can convert with it, so a typo falls back to the country instead of failing a build.
#}
{% macro time_zone_names() -%}
    {{ return(adapter.dispatch('time_zone_names', 'leadflow')()) }}
{%- endmacro %}

{% macro default__time_zone_names() -%}
    (select name from pg_timezone_names)
{%- endmacro %}

{% macro duckdb__time_zone_names() -%}
    (select name from pg_timezone_names())
{%- endmacro %}


{# A timestamp with time zone as the wall-clock time (timestamp without time zone) in `zone`. #}
{% macro to_local_time(column, zone) -%}
    {{ return(adapter.dispatch('to_local_time', 'leadflow')(column, zone)) }}
{%- endmacro %}

{% macro default__to_local_time(column, zone) -%}
    ({{ column }} at time zone {{ zone }})
{%- endmacro %}

{% macro duckdb__to_local_time(column, zone) -%}
    timezone({{ zone }}, cast({{ column }} as timestamp with time zone))
{%- endmacro %}


{# A wall-clock time (timestamp without time zone) in `zone` as a timestamp with time zone. #}
{% macro from_local_time(column, zone) -%}
    {{ return(adapter.dispatch('from_local_time', 'leadflow')(column, zone)) }}
{%- endmacro %}

{% macro default__from_local_time(column, zone) -%}
    (cast({{ column }} as timestamp) at time zone {{ zone }})
{%- endmacro %}

{% macro duckdb__from_local_time(column, zone) -%}
    timezone({{ zone }}, cast({{ column }} as timestamp))
{%- endmacro %}


{# ISO 8601 week of a wall-clock timestamp, e.g. '2026-W48' (weeks start on Monday). #}
{% macro iso_week_label(column) -%}
    {{ return(adapter.dispatch('iso_week_label', 'leadflow')(column)) }}
{%- endmacro %}

{% macro default__iso_week_label(column) -%}
    to_char({{ column }}, 'IYYY-"W"IW')
{%- endmacro %}

{% macro duckdb__iso_week_label(column) -%}
    strftime({{ column }}, '%G-W%V')
{%- endmacro %}


{# Minutes after local midnight at which quiet hours start / end (vars, local hours 0-24). #}
{% macro quiet_hours_minutes() -%}
    {%- set start = (var('activation_quiet_hours_start_hour') * 60) | int -%}
    {%- set finish = (var('activation_quiet_hours_end_hour') * 60) | int -%}
    {{ return((start, finish)) }}
{%- endmacro %}


{#
    Whether a wall-clock time lies in quiet hours [start, end) (vars activation_quiet_hours_*);
    start > end wraps midnight (21 → 8 = 21:00 to 08:00); start = end disables quiet hours.
#}
{% macro is_in_quiet_hours(local_time) -%}
    {%- set start, finish = leadflow.quiet_hours_minutes() -%}
    {%- set midnight = "date_trunc('day', " ~ local_time ~ ")" -%}
    {%- if start == finish -%}
        false
    {%- elif start > finish -%}
        ({{ local_time }} >= {{ midnight }} + interval '{{ start }} minutes'
        or {{ local_time }} < {{ midnight }} + interval '{{ finish }} minutes')
    {%- else -%}
        ({{ local_time }} >= {{ midnight }} + interval '{{ start }} minutes'
        and {{ local_time }} < {{ midnight }} + interval '{{ finish }} minutes')
    {%- endif -%}
{%- endmacro %}


{#
    The first instant at or after `moment` (timestamp with time zone) outside quiet hours in `zone`:
    `moment` itself when allowed, else the end of the quiet period it falls in (local time), e.g.
    with 21 → 8, 23:30 local becomes 08:00 local the next day and 06:00 becomes 08:00 the same day.
#}
{% macro next_allowed_send_time(moment, zone) -%}
    {%- set start, finish = leadflow.quiet_hours_minutes() -%}
    {%- set local = leadflow.to_local_time(moment, zone) -%}
    {%- set midnight = "date_trunc('day', " ~ local ~ ")" -%}
    {%- if start == finish -%}
        {{ moment }}
    {%- elif start > finish -%}
        case
            when {{ local }} >= {{ midnight }} + interval '{{ start }} minutes'
                then {{ leadflow.from_local_time(
                    midnight ~ " + interval '1 day' + interval '" ~ finish ~ " minutes'", zone) }}
            when {{ local }} < {{ midnight }} + interval '{{ finish }} minutes'
                then {{ leadflow.from_local_time(midnight ~ " + interval '" ~ finish ~ " minutes'", zone) }}
            else {{ moment }}
        end
    {%- else -%}
        case
            when
                {{ local }} >= {{ midnight }} + interval '{{ start }} minutes'
                and {{ local }} < {{ midnight }} + interval '{{ finish }} minutes'
                then {{ leadflow.from_local_time(midnight ~ " + interval '" ~ finish ~ " minutes'", zone) }}
            else {{ moment }}
        end
    {%- endif -%}
{%- endmacro %}


{#
    When the allowed window that `moment` (outside quiet hours) lies in closes: the next start of
    quiet hours in `zone`; null when quiet hours are disabled.
#}
{% macro send_window_end(moment, zone) -%}
    {%- set start, finish = leadflow.quiet_hours_minutes() -%}
    {%- set local = leadflow.to_local_time(moment, zone) -%}
    {%- set midnight = "date_trunc('day', " ~ local ~ ")" -%}
    {%- if start == finish -%}
        cast(null as timestamp with time zone)
    {%- else -%}
        case
            when {{ local }} < {{ midnight }} + interval '{{ start }} minutes'
                then {{ leadflow.from_local_time(midnight ~ " + interval '" ~ start ~ " minutes'", zone) }}
            else {{ leadflow.from_local_time(
                midnight ~ " + interval '1 day' + interval '" ~ start ~ " minutes'", zone) }}
        end
    {%- endif -%}
{%- endmacro %}
