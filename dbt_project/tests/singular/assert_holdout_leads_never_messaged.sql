-- A row here is a lead held out of a workflow (int_holdout_assignments) that was sent a message of
-- that workflow: the control group is contaminated and fct_holdout_lift understates the lift. Warns
-- only: messages sent before holdouts existed (or before the send list joined them) stay in the ledger.
{{ config(severity='warn') }}

select
    lead_id,
    workflow,
    messages_sent
from {{ ref('int_holdout_assignments') }}
where is_holdout and messages_sent > 0
