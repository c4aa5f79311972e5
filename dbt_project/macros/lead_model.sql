{#
    Building blocks of the lead model (LEAD_MODEL.md) shared by the scoring and stage models.
#}


{#
    The time everything is computed at: var `as_of` (ISO 8601, naive = UTC), else the build's start,
    so that every model of one build sees the same instant.
#}
{% macro as_of() -%}
    {%- set value = var('as_of', none) or run_started_at.strftime('%Y-%m-%dT%H:%M:%S.%f+00:00') -%}
    cast('{{ value }}' as timestamp with time zone)
{%- endmacro %}


{#
    Where scoring rules are read from: the seed, or the relation named by var `scoring_rules_relation`
    (`leadflow scoring preview` builds candidate scores from candidate rules in another schema).
#}
{% macro scoring_rules_relation() -%}
    {%- set override = var('scoring_rules_relation', none) -%}
    {%- if override -%}
        {{ override }}
    {%- else -%}
        {{ ref('scoring_rules') }}
    {%- endif -%}
{%- endmacro %}


{# Seconds since the Unix epoch as a double (fractional seconds kept). #}
{% macro epoch_seconds(column) -%}
    {{ return(adapter.dispatch('epoch_seconds', 'leadflow')(column)) }}
{%- endmacro %}

{% macro default__epoch_seconds(column) -%}
    cast(extract(epoch from {{ column }}) as double precision)
{%- endmacro %}

{% macro duckdb__epoch_seconds(column) -%}
    epoch({{ column }})
{%- endmacro %}


{#
    Text in code-point (byte) order, the order Python's sorted() gives: ids break ties in the
    processing order, and PostgreSQL would otherwise sort by the database's locale.
#}
{% macro codepoint_order(column) -%}
    {{ return(adapter.dispatch('codepoint_order', 'leadflow')(column)) }}
{%- endmacro %}

{% macro default__codepoint_order(column) -%}
    {{ column }} collate "C"
{%- endmacro %}

{% macro duckdb__codepoint_order(column) -%}
    {#- DuckDB compares VARCHAR byte-wise unless a collation is asked for -#}
    {{ column }}
{%- endmacro %}


{# A timestamp plus a (possibly fractional) number of days, as days x 86400 seconds (no DST days). #}
{% macro add_days(column, days) -%}
    {{ column }} + ({{ days }}) * 86400 * interval '1 second'
{%- endmacro %}


{# Fractional days from `start` to `finish` (seconds / 86400.0). #}
{% macro days_between(start, finish) -%}
    ({{ leadflow.epoch_seconds(finish) }} - {{ leadflow.epoch_seconds(start) }}) / 86400.0
{%- endmacro %}


{#
    A score compared with a threshold: scores are sums of decayed doubles, so an exact 40 may come
    out as 39.99999999999; var `score_compare_epsilon` absorbs that rounding, nothing more.
#}
{% macro score_reaches(score, threshold) -%}
    ({{ score }} >= {{ threshold }} - {{ var('score_compare_epsilon') }})
{%- endmacro %}


{#
    The (lead, product) pairs an incremental model must (re)build, as a SELECT of lead_id, product_id:
    every pair on a full build; on an incremental build only pairs whose inputs fingerprint differs
    from the one stored on the model's rows, plus pairs the model holds that no longer have inputs.
    `fingerprints` is a relation/CTE with lead_id, product_id and `fingerprint_column`; `stored_rows`
    optionally narrows the model's rows read for their fingerprint to a subset that still holds
    every stored pair (e.g. each pair's first signal), so the comparison reads fewer rows.
#}
{% macro lead_pairs_to_rebuild(fingerprints, fingerprint_column, stored_rows=none) -%}
    {%- if is_incremental() %}
        select
            coalesce(current_pairs.lead_id, stored_pairs.lead_id) as lead_id,
            coalesce(current_pairs.product_id, stored_pairs.product_id) as product_id
        from {{ fingerprints }} as current_pairs
        full outer join (
            select
                lead_id,
                product_id,
                min(inputs_fingerprint) as inputs_fingerprint
            from {{ this }}
            {%- if stored_rows %}
                where {{ stored_rows }}
            {%- endif %}
            group by lead_id, product_id
        ) as stored_pairs
            on
                current_pairs.lead_id = stored_pairs.lead_id
                and current_pairs.product_id = stored_pairs.product_id
        where current_pairs.{{ fingerprint_column }} is distinct from stored_pairs.inputs_fingerprint
    {%- else %}
        select
            lead_id,
            product_id
        from {{ fingerprints }}
    {%- endif %}
{%- endmacro %}


{#
    On an incremental build, one placeholder row per rebuilt pair (every other column null, so its
    inputs_fingerprint is null): the `replace_by_key` strategy then clears pairs that now have no
    rows at all. `columns` lists the model's columns in order.
#}
{% macro lead_pair_placeholders(pairs, columns) -%}
    {%- if is_incremental() %}
        union all
        select
            {%- for column in columns %}
            {% if column in ('lead_id', 'product_id') %}{{ column }}{% else %}null{% endif %}
            as {{ column }}{{ "," if not loop.last }}
            {%- endfor %}
        from {{ pairs }}
    {%- endif %}
{%- endmacro %}


{#
    Incremental strategy `replace_by_key` (config incremental_strategy='replace_by_key', unique_key
    a list of columns, e.g. ['lead_id', 'product_id']): every stored row whose key the build returned
    rows for is deleted, then the build's rows are inserted except placeholders: rows whose
    `placeholder_marker` column (config meta, default inputs_fingerprint) is null only name a key to
    clear.
    Unlike delete+insert it matches each stored row against the distinct keys (a semi-join), not
    against every new row of its key, and needs no clean-up pass afterwards.
#}
{% macro get_incremental_replace_by_key_sql(arg_dict) -%}
    {%- set columns = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}
    {%- set marker = (config.get('meta') or {}).get('placeholder_marker', 'inputs_fingerprint') -%}
    delete from {{ arg_dict['target_relation'] }} as stored
    where exists (
        select 1
        from {{ arg_dict['temp_relation'] }} as rebuilt
        where
            {%- for key in arg_dict['unique_key'] %}
            rebuilt.{{ key }} = stored.{{ key }}{{ ' and' if not loop.last }}
            {%- endfor %}
    );

    insert into {{ arg_dict['target_relation'] }} ({{ columns }})
    select {{ columns }}
    from {{ arg_dict['temp_relation'] }}
    where {{ marker }} is not null
{%- endmacro %}


{#
    Post-hook for the lead model's tables: PostgreSQL plans the next model's joins from table
    statistics, and a table created a moment ago has none until autovacuum gets to it (measured: a
    20k-row join took 40 s on guessed row counts, 0.5 s after ANALYZE). DuckDB keeps statistics as it
    writes, so there it renders nothing (dbt skips an empty hook).
#}
{% macro refresh_statistics(relation) -%}
    {{ return(adapter.dispatch('refresh_statistics', 'leadflow')(relation)) }}
{%- endmacro %}

{% macro default__refresh_statistics(relation) -%}
    {%- if model.config.materialized in ('table', 'incremental') -%}
        analyze {{ relation }}
    {%- endif -%}
{%- endmacro %}

{% macro duckdb__refresh_statistics(relation) -%}
{%- endmacro %}


{#
    The instant this build started (dbt's run_started_at), the same in every model of one build:
    incremental models stamp the rows they write with it, and a downstream model takes the upstream
    rows stamped after the newest stamp it holds itself.
#}
{% macro build_started_at() -%}
    cast('{{ run_started_at.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00") }}' as timestamp with time zone)
{%- endmacro %}


{#
    Inside a GROUP BY: the non-null `value` of the group's latest row by `order_columns` (all
    descending, the first one deciding), or null. An aggregate, so the identities of 100k leads
    need no sort of their 2M events on DuckDB; PostgreSQL sorts inside each group.
#}
{% macro latest_value(value, order_columns) -%}
    {{ return(adapter.dispatch('latest_value', 'leadflow')(value, order_columns)) }}
{%- endmacro %}

{% macro default__latest_value(value, order_columns) -%}
    (array_agg({{ value }} order by {{ order_columns | join(' desc, ') }} desc)
        filter (where {{ value }} is not null))[1]
{%- endmacro %}

{% macro duckdb__latest_value(value, order_columns) -%}
    arg_max({{ value }}, row({{ order_columns | join(', ') }})) filter (where {{ value }} is not null)
{%- endmacro %}


{# An ISO 8601 instant as a timestamp with time zone literal. #}
{% macro timestamp_literal(iso_text) -%}
    cast('{{ iso_text }}' as timestamp with time zone)
{%- endmacro %}


{#
    What the stage walk's recursive step (fct_lead_stage_transitions) joins each frontier row to:
    on PostgreSQL the signals table, read through its (lead_id, product_id, signal_index) index one
    row per frontier row; on DuckDB, which hash-joins and has no use for the index, the CTE holding
    only the rebuilt pairs' signals (the table would be scanned whole at every step).
#}
{% macro stage_walk_signals(table_relation, rebuilt_signals_cte) -%}
    {{ return(adapter.dispatch('stage_walk_signals', 'leadflow')(table_relation, rebuilt_signals_cte)) }}
{%- endmacro %}

{% macro default__stage_walk_signals(table_relation, rebuilt_signals_cte) -%}
    {{ table_relation }}
{%- endmacro %}

{% macro duckdb__stage_walk_signals(table_relation, rebuilt_signals_cte) -%}
    {{ rebuilt_signals_cte }}
{%- endmacro %}


{#
    `indexes` config for PostgreSQL only: there the stage walk looks signals up by index, while
    DuckDB hash-joins and would only pay to maintain an ART index on every delete and insert.
#}
{% macro postgres_only(indexes) -%}
    {{ return(indexes if target.type == 'postgres' else []) }}
{%- endmacro %}
