-- A row here is a nurture message for a (lead, product) whose current stage is not mql or sql:
-- the send list no longer follows the stage model.
with

send_list as (
    select * from {{ ref('send_list_nurture') }}
),

stages as (
    select * from {{ ref('fct_lead_stages') }}
)

select send_list.idempotency_key
from send_list
left join stages
    on send_list.lead_id = stages.lead_id and send_list.product_id = stages.product_id
where stages.stage is null or stages.stage not in ('mql', 'sql') or stages.stage != send_list.stage
