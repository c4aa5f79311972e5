{#
    The nurture messages to hand over, one row per message: who (lead, recipient), which message
    (workflow step, template, message_type), on which channel with which failover routes, why
    (stage, score, rule: `reason`), and from when (due_at, never inside quiet hours). Consent,
    suppressions, the contact budget and the ledger were applied before this list exists
    (int_message_candidates_budgeted); fct_message_exclusions says why everyone else is missing.
    Activation sends rows with due_at <= now (and, to stay out of quiet hours when it runs late,
    before window_ends_at) and diffs them against the ledger by idempotency_key.

    idempotency_key = md5(lead|product|workflow|step|<product's first channel>|window): the same
    key whichever route n8n ends up delivering on (see int_message_candidates_scheduled).
    fallback_channels / fallback_recipients / fallback_message_types: the next routes, `|`-separated,
    aligned, in the product's order of preference ('' = none).
#}

with

decisions as (
    select * from {{ ref('int_message_candidates_budgeted') }}
),

final as (
    select
        cast(idempotency_key as text) as idempotency_key,
        cast(lead_id as text) as lead_id,
        cast(product_id as text) as product_id,
        cast(product_name as text) as product_name,
        cast(workflow as text) as workflow,
        cast(step as text) as step,
        cast(channel as text) as channel,
        cast(recipient as text) as recipient,
        cast(template as text) as template,
        cast(message_type as text) as message_type,
        cast(first_name as text) as first_name,
        cast(score as integer) as score,
        cast(stage as text) as stage,
        cast(reason as text) as reason,
        due_at,
        cast(fallback_channels as text) as fallback_channels,
        cast(fallback_recipients as text) as fallback_recipients,
        cast(fallback_message_types as text) as fallback_message_types,
        cast(time_zone as text) as time_zone,
        cast(priority as integer) as priority,
        window_ends_at,
        cast(send_window as text) as send_window
    from decisions
    where decision = 'send'
)

select * from final
