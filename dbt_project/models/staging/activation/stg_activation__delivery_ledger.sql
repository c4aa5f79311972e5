{#
    The activation ledger (leadflow_activation.delivery_ledger), one row per message key.
    activation/delivery.py creates the table on its first run, so a first build may not find it:
    source() is still called (lineage), and an empty relation of the same shape stands in.
#}

{%- set ledger = source('activation', 'delivery_ledger') -%}
{%- set ledger_exists = execute and adapter.get_relation(
    database=ledger.database, schema=ledger.schema, identifier=ledger.identifier
) is not none -%}

with

source as (
    {%- if ledger_exists %}
        select
            idempotency_key,
            send_list,
            lead_id,
            product_id,
            workflow,
            step,
            channel,
            channel_used,
            status,
            attempts,
            created_at,
            updated_at
        from {{ ledger }}
    {%- else %}
        -- no ledger yet: nothing was ever handed over
        select
            cast(null as text) as idempotency_key,
            cast(null as text) as send_list,
            cast(null as text) as lead_id,
            cast(null as text) as product_id,
            cast(null as text) as workflow,
            cast(null as text) as step,
            cast(null as text) as channel,
            cast(null as text) as channel_used,
            cast(null as text) as status,
            cast(null as integer) as attempts,
            cast(null as timestamp with time zone) as created_at,
            cast(null as timestamp with time zone) as updated_at
        where 1 = 0
    {%- endif %}
),

final as (
    select
        cast(idempotency_key as text) as idempotency_key,
        cast(send_list as text) as send_list,
        cast(lead_id as text) as lead_id,
        cast(product_id as text) as product_id,
        cast(workflow as text) as workflow,
        cast(step as text) as step,
        cast(channel as text) as channel,
        cast(channel_used as text) as channel_used,
        cast(status as text) as status,
        cast(attempts as integer) as attempts,
        created_at,
        -- a `sent` row is final, so its updated_at is when the receiver accepted the message
        updated_at,
        status = 'sent' as is_sent
    from source
)

select * from final
