{#
    Message performance per product, workflow, template and channel (the channel the message went out
    on): messages sent, delivered, opened, clicked, replied, failed (handed over, never delivered; such a
    message may never have counted as sent) and converted, with rates over sent (null when none was sent).
    Outcome definitions: int_messages_tracked (delivered includes opened/clicked/replied; opened includes
    clicked). converted = the message's lead converted in the message's product (a deal closed won,
    fct_conversions) after the message was sent and within var('analytics_attribution_lookback_days')
    days of it — the same window attribution uses.
#}

with

-- every handed-over message: sent ones, and ones that only ever failed (counted in `failed`)
messages as (
    select * from {{ ref('int_messages_tracked') }}
),

conversions as (
    select * from {{ ref('fct_conversions') }}
    where lead_id is not null
),

converted_messages as (
    select distinct messages.idempotency_key
    from messages
    inner join conversions
        on
            messages.is_sent
            and messages.lead_id = conversions.lead_id
            and messages.product_id = conversions.product_id
            and messages.sent_at <= conversions.converted_at
    where
        {{ leadflow.days_between('messages.sent_at', 'conversions.converted_at') }}
        <= {{ var('analytics_attribution_lookback_days') }}
),

flagged as (
    select
        coalesce(messages.product_id, 'unknown') as product_id,
        coalesce(messages.workflow, 'unknown') as workflow,
        messages.template,
        messages.channel,
        messages.is_sent,
        messages.is_delivered,
        messages.is_opened,
        messages.is_clicked,
        messages.is_replied,
        messages.is_failed,
        converted_messages.idempotency_key is not null as is_converted
    from messages
    left join converted_messages
        on messages.idempotency_key = converted_messages.idempotency_key
),

counted as (
    select
        product_id,
        workflow,
        template,
        channel,
        sum(case when is_sent then 1 else 0 end) as sent,
        sum(case when is_delivered then 1 else 0 end) as delivered,
        sum(case when is_opened then 1 else 0 end) as opened,
        sum(case when is_clicked then 1 else 0 end) as clicked,
        sum(case when is_replied then 1 else 0 end) as replied,
        sum(case when is_failed then 1 else 0 end) as failed,
        sum(case when is_converted then 1 else 0 end) as converted
    from flagged
    group by product_id, workflow, template, channel
),

final as (
    select
        product_id,
        workflow,
        template,
        channel,
        cast(sent as integer) as sent,
        cast(delivered as integer) as delivered,
        cast(opened as integer) as opened,
        cast(clicked as integer) as clicked,
        cast(replied as integer) as replied,
        cast(failed as integer) as failed,
        cast(converted as integer) as converted,
        cast(delivered as double precision) / nullif(sent, 0) as delivery_rate,
        cast(opened as double precision) / nullif(sent, 0) as open_rate,
        cast(clicked as double precision) / nullif(sent, 0) as click_rate,
        cast(replied as double precision) / nullif(sent, 0) as reply_rate,
        cast(converted as double precision) / nullif(sent, 0) as conversion_rate
    from counted
)

select * from final
