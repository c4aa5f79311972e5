-- A row here is an audit row that does not start where the previous one of its (lead, product)
-- ended, or a trail whose sequence has a gap: the trail cannot be replayed.
with

transitions as (
    select * from {{ ref('fct_lead_stage_transitions') }}
)

select
    current_row.lead_id,
    current_row.product_id,
    current_row.transition_seq,
    current_row.from_stage,
    previous_row.to_stage as previous_to_stage
from transitions as current_row
left join transitions as previous_row
    on
        current_row.lead_id = previous_row.lead_id
        and current_row.product_id = previous_row.product_id
        and current_row.transition_seq = previous_row.transition_seq + 1
where
    current_row.transition_seq > 1
    and (previous_row.lead_id is null or current_row.from_stage is distinct from previous_row.to_stage)
