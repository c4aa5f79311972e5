{#
    No message of send_list_messages is due inside quiet hours (vars activation_quiet_hours_*) in
    the lead's local time zone. A row is a message activation could send at night.
#}

-- dagster-dbt attaches this test to send_list_messages as an asset check (it reads other models too)
{{ config(meta={'dagster': {'ref': {'name': 'send_list_messages'}}}) }}

with

send_list as (
    select * from {{ ref('send_list_messages') }}
),

localized as (
    select
        idempotency_key,
        lead_id,
        time_zone,
        due_at,
        {{ leadflow.to_local_time('due_at', 'time_zone') }} as due_at_local
    from send_list
)

select * from localized
where {{ leadflow.is_in_quiet_hours('due_at_local') }}
