with

source as (
    select * from {{ source('crm', 'contacts') }}
),

renamed as (
    select
        cast(id as text) as contact_id,
        {{ leadflow.normalize_email('email') }} as email,
        email as email_raw,
        {{ leadflow.clean_text('phone_e164') }} as phone_e164,
        phone as phone_raw,
        mobilephone as mobile_phone_raw,
        {{ leadflow.clean_text('firstname') }} as first_name,
        {{ leadflow.clean_text('lastname') }} as last_name,
        upper({{ leadflow.clean_text('country') }}) as country,
        {{ leadflow.clean_text('hs_timezone') }} as time_zone,
        {{ leadflow.clean_text('jobtitle') }} as job_title,
        {{ leadflow.clean_text('lifecyclestage') }} as lifecycle_stage,
        -- an unknown opt-out flag is not consent to anything, but HubSpot leaves it empty for
        -- contacts who never unsubscribed: empty means "has not opted out"
        coalesce(hs_email_optout, false) as email_opt_out,
        {{ leadflow.clean_text('cast(associatedcompanyid as text)') }} as company_id,
        createdate as created_at,
        lastmodifieddate as updated_at,
        coalesce(archived, false) as is_archived
    from source
),

-- dlt merges on id, so duplicates should not exist; if a re-sync ever leaves two versions, keep the latest
ranked as (
    select
        *,
        row_number() over (
            partition by contact_id
            order by updated_at desc nulls last, created_at desc nulls last
        ) as version_rank
    from renamed
),

final as (
    select
        contact_id,
        email,
        email_raw,
        phone_e164,
        phone_raw,
        mobile_phone_raw,
        first_name,
        last_name,
        country,
        time_zone,
        job_title,
        lifecycle_stage,
        email_opt_out,
        company_id,
        created_at,
        updated_at
    from ranked
    where version_rank = 1 and not is_archived
)

select * from final
