{#
    When each candidate message may go out and the key that makes it one message:
    - due_at: the first instant at or after max(stage entry, as_of) outside quiet hours in the lead's
      local time zone (vars activation_quiet_hours_*); a message due at 23:30 local waits for 08:00.
      A message is never due in the past, so activation (which sends due_at <= now) never sends an
      old message in the middle of the night. window_ends_at: when that allowed window closes.
    - send_window: `once`; `entered:<epoch seconds of the stage entry>` (stage_entry); or the ISO
      week of due_at in local time, e.g. `2026-W48` (iso_week).
    - idempotency_key = md5(lead|product|workflow|step|key_channel|send_window), key_channel = the
      product's FIRST channel (products.channels), not the channel this lead gets: the key stays the
      same when consent or an address changes or n8n fails over to another route, so one message is
      never delivered twice on two channels, and it equals send_list_nurture's key for mql_welcome.
#}

-- a table, not a view: the send list, the exclusions mart and this model's tests each read it, and a view
-- would recompute the candidate chain for every one of them
{{ config(materialized='table') }}

with

candidates as (
    select * from {{ ref('int_message_candidates_selected') }}
),

time_zones as (
    select * from {{ ref('int_lead_time_zones_resolved') }}
),

zoned as (
    select
        candidates.*,
        coalesce(time_zones.time_zone, '{{ var("activation_default_time_zone") }}') as time_zone,
        greatest(candidates.stage_entered_at, {{ leadflow.as_of() }}) as send_from
    from candidates
    left join time_zones
        on candidates.lead_id = time_zones.lead_id
),

scheduled as (
    select
        *,
        {{ leadflow.next_allowed_send_time('send_from', 'time_zone') }} as due_at
    from zoned
),

localized as (
    select
        *,
        {{ leadflow.to_local_time('due_at', 'time_zone') }} as due_at_local,
        split_part(channels, '|', 1) as key_channel
    from scheduled
),

windowed as (
    select
        *,
        case send_window_kind
            when 'once' then 'once'
            when 'stage_entry'
                then 'entered:'
                    || cast(cast(floor({{ leadflow.epoch_seconds('stage_entered_at') }}) as bigint) as text)
            when 'iso_week' then {{ leadflow.iso_week_label('due_at_local') }}
        end as send_window
    from localized
),

final as (
    select
        {{ leadflow.hash_key(['lead_id', 'product_id', 'workflow', 'step', 'key_channel', 'send_window']) }}
            as idempotency_key,
        lead_id,
        product_id,
        product_name,
        workflow,
        step,
        template,
        send_window_kind,
        send_window,
        key_channel,
        step_order,
        stage,
        stage_entered_at,
        entered_by_rule_id,
        score,
        reason,
        priority,
        channels,
        is_product_active,
        first_name,
        time_zone,
        stage_entered_at as eligible_at,
        due_at,
        {{ leadflow.send_window_end('due_at', 'time_zone') }} as window_ends_at,
        cast(due_at_local as date) as due_local_date,
        cast(date_trunc('week', due_at_local) as date) as due_local_week
    from windowed
)

select * from final
