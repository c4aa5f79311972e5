-- A row here is an audit row whose (from_stage, to_stage, trigger, rule_id) is not a row of
-- stage_rules (the initial entry into `new` aside): the state machine moved a lead along a path
-- the rules do not allow, or recorded the wrong rule.
with

transitions as (
    select * from {{ ref('fct_lead_stage_transitions') }}
),

stage_rules as (
    select * from {{ ref('stage_rules') }}
)

select transitions.*
from transitions
left join stage_rules
    on
        transitions.from_stage = stage_rules.from_stage
        and transitions.to_stage = stage_rules.to_stage
        and transitions.trigger = stage_rules.trigger
        and transitions.rule_id = stage_rules.rule_id
where
    stage_rules.rule_id is null
    and not (
        transitions.rule_id = 'initial'
        and transitions.from_stage is null
        and transitions.to_stage = 'new'
        and transitions.transition_seq = 1
    )
