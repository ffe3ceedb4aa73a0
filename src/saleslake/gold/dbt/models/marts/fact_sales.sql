-- One row per silver order line. Dimension keys point at the version valid on the order
-- date: an ASOF join picks the latest version with valid_from <= order_date (versions of
-- a key are contiguous, so that version also has order_date < valid_to). Keys that do
-- not resolve get the unknown member (-1), never NULL.
with lines as (
    select * from {{ ref('stg_sales_lines') }}
),

customers as (
    select customer_id, valid_from, customer_sk
    from {{ ref('dim_customer') }}
    where customer_sk <> -1
),

products as (
    select product_id, valid_from, product_sk
    from {{ ref('dim_product') }}
    where product_sk <> -1
),

stores as (
    select store_id, valid_from, store_sk
    from {{ ref('dim_store') }}
    where store_sk <> -1
),

resolved as (
    select
        l.*,
        coalesce(c.customer_sk, -1) as customer_sk,
        coalesce(p.product_sk, -1)  as product_sk,
        coalesce(s.store_sk, -1)    as store_sk
    from lines as l
    asof left join customers as c
        on l.customer_id = c.customer_id and l.order_date >= c.valid_from
    asof left join products as p
        on l.product_id = p.product_id and l.order_date >= p.valid_from
    asof left join stores as s
        on l.store_id = s.store_id and l.order_date >= s.valid_from
),

measures as (
    select
        *,
        cast(round(sales * discount, 4) as decimal(18, 4)) as discount_amount
    from resolved
)

select
    line_key,
    order_id,
    line_id,
    {{ date_key('order_date') }}                          as order_date_key,
    {{ date_key('ship_date') }}                           as ship_date_key,
    cast(customer_sk as bigint)                           as customer_sk,
    cast(product_sk as bigint)                            as product_sk,
    cast(store_sk as bigint)                              as store_sk,
    {{ geography_sk() }}                                  as geography_sk,
    source_system,
    ship_mode,
    order_priority,
    quantity,
    unit_price,
    sales,
    discount,
    discount_amount,
    cast(sales - discount_amount as decimal(18, 4))       as net_sales,
    profit,
    case
        when sales - discount_amount = 0 then null
        else round(cast(profit as double) / cast(sales - discount_amount as double), 6)
    end                                                   as profit_margin,
    shipping_cost,
    tax_amount,
    is_suspected_fraud,
    is_outlier,
    dq_score
from measures
