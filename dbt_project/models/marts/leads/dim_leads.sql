{#
    One row per person. Identities merge only on the lead key (int_lead_identities), and consent is
    rolled up inside that person: opted out if ANY of the person's CRM records opted out. Attributes
    never come from another lead.
#}

with

identities as (
    select * from {{ ref('int_lead_identities') }}
),

contacts as (
    select * from {{ ref('stg_crm__contacts') }}
),

leads as (
    select
        lead_id,
        min(lead_key) as lead_key,
        min(match_reason) as lead_key_type,
        max(case when match_reason = 'email' then email end) as email,
        count(*) as identity_count
    from identities
    group by lead_id
),

crm_records as (
    select
        identities.lead_id,
        contacts.*
    from identities
    inner join contacts
        on
            identities.identity_source = 'crm_contact'
            and identities.source_id = contacts.contact_id
),

latest_crm_record as (
    select
        *,
        row_number() over (
            partition by lead_id order by updated_at desc nulls last, contact_id desc
        ) as recency_rank
    from crm_records
),

crm_rollup as (
    select
        lead_id,
        count(*) as crm_contact_count,
        bool_or(email_opt_out) as email_opt_out,
        min(created_at) as first_seen_at,
        max(phone_e164) as any_phone_e164
    from crm_records
    group by lead_id
),

product_rollup as (
    select
        lead_id,
        count(*) as product_identity_count,
        min(first_seen_at) as first_seen_at,
        max(last_seen_at) as last_seen_at,
        max(phone_e164) as phone_e164
    from identities
    where identity_source = 'product_user'
    group by lead_id
),

final as (
    select
        leads.lead_id,
        leads.lead_key,
        leads.lead_key_type,
        leads.email,
        latest_crm_record.first_name,
        latest_crm_record.last_name,
        coalesce(latest_crm_record.phone_e164, crm_rollup.any_phone_e164, product_rollup.phone_e164)
            as phone_e164,
        latest_crm_record.country,
        latest_crm_record.time_zone,
        latest_crm_record.job_title,
        latest_crm_record.lifecycle_stage,
        latest_crm_record.company_id,
        cast(coalesce(crm_rollup.crm_contact_count, 0) as integer) as crm_contact_count,
        crm_rollup.lead_id is not null as is_in_crm,
        product_rollup.lead_id is not null as is_product_user,
        cast(leads.identity_count as integer) as identity_count,
        coalesce(
            least(crm_rollup.first_seen_at, product_rollup.first_seen_at),
            crm_rollup.first_seen_at,
            product_rollup.first_seen_at
        ) as first_seen_at,
        product_rollup.last_seen_at as last_product_activity_at,
        -- no CRM record means no recorded opt-out (product users signed up themselves)
        coalesce(crm_rollup.email_opt_out, false) as email_opt_out
    from leads
    left join latest_crm_record
        on
            leads.lead_id = latest_crm_record.lead_id
            and latest_crm_record.recency_rank = 1
    left join crm_rollup
        on leads.lead_id = crm_rollup.lead_id
    left join product_rollup
        on leads.lead_id = product_rollup.lead_id
)

select * from final
