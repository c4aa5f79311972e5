{#
    Touches: what a lead saw or did in a product before converting, one row per touch.
    - `message`: a nurture message sent to the lead (int_messages_tracked.is_sent) at sent_at, on the
      channel it went out on (email, whatsapp, chatbot).
    - `product_event`: an engagement event of the product itself (fct_engagement_events with
      event_product_id = product_id: events matching one of the product's own scoring rules, whether
      or not they earned points), channel `product`. Cross-product events are not touches of the
      scoring product: they belong to the product they happened in.
    Only touches at or before as_of, with a lead and a product.
#}

with

messages as (
    select * from {{ ref('int_messages_tracked') }}
    where is_sent and lead_id is not null and product_id is not null and sent_at is not null
),

engagement_events as (
    select * from {{ ref('fct_engagement_events') }}
    where event_product_id = product_id and occurred_at <= {{ leadflow.as_of() }}
),

products as (
    select * from {{ ref('products') }}
),

message_touches as (
    select
        'message:' || idempotency_key as touch_id,
        'message' as touch_type,
        lead_id,
        product_id,
        workflow,
        channel,
        template,
        sent_at as touched_at
    from messages
),

event_touches as (
    select
        'event:' || engagement_events.event_id as touch_id,
        'product_event' as touch_type,
        engagement_events.lead_id,
        engagement_events.product_id,
        products.nurture_workflow as workflow,
        'product' as channel,
        cast(null as {{ dbt.type_string() }}) as template,
        engagement_events.occurred_at as touched_at
    from engagement_events
    inner join products
        on engagement_events.product_id = products.product_id
),

final as (
    select * from message_touches
    union all
    select * from event_touches
)

select * from final
