{#
    Candidate events (LEAD_MODEL.md): events up to as_of with a resolved lead that match a scoring
    rule of product P on (event_product_id, event_type); one row per (event, scoring product).
    A rule counting another product's events only applies when P lists that product in
    products.cross_product_sources: events of Q never touch P otherwise.
#}

-- a view: int_events_attributed is persisted and the rules are a seed, so a reader pays one join;
-- fct_engagement_events reads only the pairs it rebuilds
with

events as (
    select * from {{ ref('int_events_attributed') }}
    where lead_id is not null
),

scoring_rules as (
    select * from {{ leadflow.scoring_rules_relation() }}
),

products as (
    select * from {{ ref('products') }}
),

declared_rules as (
    select
        scoring_rules.*,
        products.decay_half_life_days
    from scoring_rules
    inner join products
        on scoring_rules.product_id = products.product_id
    where
        scoring_rules.event_product_id = scoring_rules.product_id
        or '|' || coalesce(products.cross_product_sources, '') || '|'
        like '%|' || scoring_rules.event_product_id || '|%'
),

final as (
    select
        events.event_id,
        events.lead_id,
        declared_rules.product_id,
        declared_rules.rule_id,
        events.product_id as event_product_id,
        events.event_type,
        events.occurred_at,
        events.stream,
        events.event_source,
        events.feature_name,
        declared_rules.points as rule_points,
        declared_rules.is_repeatable,
        declared_rules.daily_cap
    from events
    inner join declared_rules
        on
            events.product_id = declared_rules.event_product_id
            and events.event_type = declared_rules.event_type
)

select * from final
