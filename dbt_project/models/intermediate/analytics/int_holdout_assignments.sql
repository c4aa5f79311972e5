{#
    Holdout (control) groups: of the leads eligible for a workflow (every (lead, product) the routing
    knows, fct_lead_workflow_routing), a share var('analytics_holdout_share') is held out of every
    message of that workflow.
    The draw is a pure function of (lead_id, workflow): holdout_draw = first 8 hex digits of
    md5(lead_id || '|' || workflow) / 16^8, held out when holdout_draw < share. Nothing random, no state:
    a lead keeps its group across runs and warehouses (never re-drawn); raising the share only moves
    treated leads into the holdout, never the other way.
    Send lists exclude these leads with reason `holdout` (join on lead_id and workflow, is_holdout).
    messages_sent counts messages the lead got in the workflow anyway (sent before holdouts existed, or
    by a send list that does not join this model yet): nonzero for a holdout lead means contamination.
#}

with

routing as (
    select * from {{ ref('fct_lead_workflow_routing') }}
),

messages as (
    select * from {{ ref('int_messages_tracked') }}
    where is_sent
),

sent_per_lead as (
    select
        lead_id,
        workflow,
        count(*) as messages_sent
    from messages
    group by lead_id, workflow
),

drawn as (
    select
        lead_id,
        product_id,
        workflow,
        {{ leadflow.unit_hash("lead_id || '|' || workflow") }} as holdout_draw
    from routing
),

final as (
    select
        drawn.lead_id,
        drawn.product_id,
        drawn.workflow,
        drawn.holdout_draw,
        cast({{ var('analytics_holdout_share') }} as double precision) as holdout_share,
        drawn.holdout_draw < {{ var('analytics_holdout_share') }} as is_holdout,
        case
            when drawn.holdout_draw < {{ var('analytics_holdout_share') }} then 'holdout' else 'treated'
        end as holdout_group,
        cast(coalesce(sent_per_lead.messages_sent, 0) as integer) as messages_sent
    from drawn
    left join sent_per_lead
        on drawn.lead_id = sent_per_lead.lead_id and drawn.workflow = sent_per_lead.workflow
)

select * from final
