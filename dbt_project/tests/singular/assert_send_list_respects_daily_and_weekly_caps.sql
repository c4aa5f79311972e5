{#
    The contact budget holds: per lead, the messages of send_list_messages due on one local day
    (in the row's time_zone) plus the messages the ledger recorded `sent` that local day never exceed
    activation_max_messages_per_day, and likewise per local ISO week (Monday start) for
    activation_max_messages_per_week. A row is a lead and period over the cap: someone would be
    messaged more often than the budget allows, across all products.
#}

-- dagster-dbt attaches this test to send_list_messages as an asset check (it reads other models too)
{{ config(meta={'dagster': {'ref': {'name': 'send_list_messages'}}}) }}

with

send_list as (
    select * from {{ ref('send_list_messages') }}
),

ledger as (
    select * from {{ ref('stg_activation__delivery_ledger') }}
    where is_sent
),

lead_zones as (
    select distinct
        lead_id,
        time_zone
    from send_list
),

planned as (
    select
        lead_id,
        cast({{ leadflow.to_local_time('due_at', 'time_zone') }} as date) as local_date
    from send_list
),

already_sent as (
    select
        ledger.lead_id,
        cast({{ leadflow.to_local_time('ledger.updated_at', 'lead_zones.time_zone') }} as date) as local_date
    from ledger
    inner join lead_zones
        on ledger.lead_id = lead_zones.lead_id
),

messages as (
    select * from planned
    union all
    select * from already_sent
),

per_day as (
    select
        lead_id,
        'day' as period,
        local_date as period_start,
        count(*) as message_count
    from messages
    group by lead_id, local_date
),

per_week as (
    select
        lead_id,
        'week' as period,
        cast(date_trunc('week', local_date) as date) as period_start,
        count(*) as message_count
    from messages
    group by lead_id, cast(date_trunc('week', local_date) as date)
),

over_cap as (
    select * from per_day
    where message_count > {{ var('activation_max_messages_per_day') }}
    union all
    select * from per_week
    where message_count > {{ var('activation_max_messages_per_week') }}
)

-- only periods the send list adds to can be its fault
select over_cap.*
from over_cap
where exists (
        select 1
        from planned
        where
            planned.lead_id = over_cap.lead_id
            and (
                (over_cap.period = 'day' and planned.local_date = over_cap.period_start)
                or (
                    over_cap.period = 'week'
                    and cast(date_trunc('week', planned.local_date) as date) = over_cap.period_start
                )
            )
    )
