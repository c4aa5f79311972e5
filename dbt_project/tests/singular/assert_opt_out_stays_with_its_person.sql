-- A row here is a lead whose opt-out disagrees with its own CRM records: either a lead with an
-- opted-out record lost the opt-out in the merge, or a lead is opted out though none of its own
-- records are (consent borrowed from another person).
with

identities as (
    select * from {{ ref('int_lead_identities') }}
),

contacts as (
    select * from {{ ref('stg_crm__contacts') }}
),

leads as (
    select * from {{ ref('dim_leads') }}
),

own_opt_out as (
    select
        identities.lead_id,
        bool_or(contacts.email_opt_out) as any_record_opted_out
    from identities
    inner join contacts
        on
            identities.identity_source = 'crm_contact'
            and identities.source_id = contacts.contact_id
    group by identities.lead_id
)

select
    leads.lead_id,
    leads.email_opt_out,
    own_opt_out.any_record_opted_out
from leads
left join own_opt_out
    on leads.lead_id = own_opt_out.lead_id
where leads.email_opt_out != coalesce(own_opt_out.any_record_opted_out, false)
