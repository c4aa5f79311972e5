-- A row here is a scoring rule that counts another product's events although the scoring product
-- does not list that product in products.cross_product_sources: the rule would never apply
-- (LEAD_MODEL.md), so the seed is wrong.
with

scoring_rules as (
    select * from {{ ref('scoring_rules') }}
),

products as (
    select * from {{ ref('products') }}
)

select scoring_rules.*
from scoring_rules
inner join products
    on scoring_rules.product_id = products.product_id
where
    scoring_rules.event_product_id != scoring_rules.product_id
    and '|' || coalesce(products.cross_product_sources, '') || '|'
    not like '%|' || scoring_rules.event_product_id || '|%'
