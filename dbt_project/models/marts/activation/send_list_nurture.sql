{#
    Nurture messages due: one 'mql_welcome' email per (lead, product) whose current stage in the
    product is mql or sql (fct_lead_stages), through the product's nurture workflow, for active
    products with the email channel and leads with an email who have not opted out. Activation diffs
    this list against leadflow_activation.delivery_ledger by idempotency_key, so the key must never
    change for the same message: md5('<lead_id>|<product_id>|<workflow>|<step>|<channel>|<window>'),
    window 'once' for a step sent once per lead and product.
#}

with

lead_stages as (
    select * from {{ ref('fct_lead_stages') }}
),

transitions as (
    select * from {{ ref('fct_lead_stage_transitions') }}
),

lead_scores as (
    select * from {{ ref('fct_lead_scores') }}
),

products as (
    select * from {{ ref('products') }}
),

leads as (
    select * from {{ ref('dim_leads') }}
),

-- the welcome is due from the pair's first arrival in mql or sql
first_qualified as (
    select
        lead_id,
        product_id,
        min(transitioned_at) as qualified_at
    from transitions
    where to_stage in ('mql', 'sql')
    group by lead_id, product_id
),

qualified as (
    select
        lead_stages.lead_id,
        lead_stages.product_id,
        products.product_name,
        products.nurture_workflow as workflow,
        'mql_welcome' as step,
        'email' as channel,
        'once' as send_window,
        leads.email as recipient,
        'mql_welcome' as template,
        leads.first_name,
        coalesce(lead_scores.score, 0) as score,
        products.mql_threshold,
        lead_stages.stage,
        first_qualified.qualified_at
    from lead_stages
    inner join products
        on lead_stages.product_id = products.product_id
    inner join leads
        on lead_stages.lead_id = leads.lead_id
    inner join first_qualified
        on
            lead_stages.lead_id = first_qualified.lead_id
            and lead_stages.product_id = first_qualified.product_id
    left join lead_scores
        on
            lead_stages.lead_id = lead_scores.lead_id
            and lead_stages.product_id = lead_scores.product_id
    where
        lead_stages.stage in ('mql', 'sql')
        and products.is_active
        and '|' || products.channels || '|' like '%|email|%'
        and leads.email is not null
        and not leads.email_opt_out
),

final as (
    select
        {{ leadflow.hash_key(['lead_id', 'product_id', 'workflow', 'step', 'channel', 'send_window']) }}
            as idempotency_key,
        lead_id,
        product_id,
        product_name,
        workflow,
        step,
        channel,
        recipient,
        template,
        first_name,
        cast(round(score) as integer) as score,
        stage,
        'stage ' || stage || ' in ' || product_id || ' (score ' || cast(cast(round(score) as integer) as text)
        || ', MQL threshold ' || cast(mql_threshold as text) || ')' as reason,
        {{ dbt.dateadd('minute', var('mql_welcome_delay_minutes'), 'qualified_at') }} as due_at
    from qualified
)

select * from final
