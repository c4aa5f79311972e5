{#
    Fails with one row per combination of `combination_of_columns` that occurs more than once:
    the model's grain is not what its YAML says.
#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

    with

    grouped as (
        select
            {{ combination_of_columns | join(', ') }},
            count(*) as occurrences
        from {{ model }}
        group by {{ combination_of_columns | join(', ') }}
    )

    select *
    from grouped
    where occurrences > 1

{% endtest %}
