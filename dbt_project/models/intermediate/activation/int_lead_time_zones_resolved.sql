{#
    The time zone quiet hours and the contact budget use for each lead: the CRM time zone
    (HubSpot writes hs_timezone as `europe_slash_berlin`; an IANA name also works) when the
    warehouse knows it, else the zone of the lead's country (seed country_time_zones), else var
    activation_default_time_zone.
#}

with

leads as (
    select * from {{ ref('dim_leads') }}
),

country_zones as (
    select * from {{ ref('country_time_zones') }}
),

-- names compared case-insensitively; min() picks one spelling should a warehouse list two
known_zones as (
    select
        lower(name) as zone_key,
        min(name) as time_zone
    from {{ leadflow.time_zone_names() }} as zone_names
    group by lower(name)
),

crm_zone_keys as (
    select
        lead_id,
        country,
        time_zone as crm_time_zone,
        lower(
            replace(replace(replace(time_zone, '_slash_', '/'), '_minus_', '-'), '_plus_', '+')
        ) as zone_key
    from leads
),

final as (
    select
        crm_zone_keys.lead_id,
        coalesce(
            crm_zone.time_zone, country_zone.time_zone, '{{ var("activation_default_time_zone") }}'
        ) as time_zone,
        case
            when crm_zone.time_zone is not null then 'crm'
            when country_zone.time_zone is not null then 'country'
            else 'default'
        end as time_zone_source,
        crm_zone_keys.crm_time_zone,
        crm_zone_keys.country
    from crm_zone_keys
    left join known_zones as crm_zone
        on crm_zone_keys.zone_key = crm_zone.zone_key
    left join country_zones
        on crm_zone_keys.country = country_zones.country
    left join known_zones as country_zone
        on lower(country_zones.time_zone) = country_zone.zone_key
)

select * from final
