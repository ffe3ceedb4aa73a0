-- One row per silver order line. Dimension keys point at the version valid on the order
-- date (valid_from <= order_date < valid_to): an equality hash join on the natural key
-- with a range filter, which streams the lines (a key has only a few versions). Keys
-- that do not resolve get the unknown member (-1), never NULL.
--
-- is_suspected_fraud and fraud_reasons: silver's line rules plus the history rules
-- (velocity, quantity_above_norm) decided over all of silver (macros/fraud.sql).
--
-- Incremental (delete+insert on line_key): a full build computes every line; an
-- incremental one recomputes the lines of int_fact_recompute and deletes the pending
-- lines gone from silver (pre-hook, same transaction). Beyond CONTRACT §5 it carries
-- order_month (the partition of the published Delta table) and the internal column
-- _line_hash (leading underscore: not published), the fingerprint of the silver line it
-- was computed from, which the next incremental build compares with silver.
{{ config(
    materialized='incremental',
    unique_key='line_key',
    incremental_strategy='delete+insert',
    on_schema_change='fail',
    pre_hook="{% if is_incremental() %}
        delete from {{ this }}
        where line_key in (select line_key from {{ ref('int_pending_lines') }})
          and line_key not in (select line_key from {{ ref('int_fact_recompute') }})
        {% endif %}",
) }}
{{ assert_incremental_state() }}
-- depends_on: {{ ref('int_pending_lines') }}
-- depends_on: {{ ref('int_fact_recompute') }}
-- depends_on: {{ ref('int_fraud_lines') }}
with lines as (
    select * from {{ ref('stg_sales_lines') }}
    {%- if is_incremental() %}
    -- the order dates let DuckDB skip silver's files by their statistics
    where order_date in (select order_date from {{ ref('int_fact_recompute') }})
      and line_key in (select line_key from {{ ref('int_fact_recompute') }})
    {%- endif %}
),

customers as (
    select customer_id, valid_from, valid_to, customer_sk
    from {{ ref('dim_customer') }}
    where customer_sk <> -1
),

products as (
    select product_id, valid_from, valid_to, product_sk
    from {{ ref('dim_product') }}
    where product_sk <> -1
),

stores as (
    select store_id, valid_from, valid_to, store_sk
    from {{ ref('dim_store') }}
    where store_sk <> -1
),

-- the judged lines a history fraud rule flags (macros/fraud.sql); int_fraud_lines is
-- up to date for every line, recomputed or not
history_flags as (
    select line_key, velocity, above_norm
    from {{ ref('int_fraud_lines') }}
    where velocity or above_norm
),

-- every geography of the lines (and maybe some no line has any more: harmless here)
geographies as (
    select * from {{ ref('int_geography') }}
),

resolved as (
    select
        l.*,
        coalesce(c.customer_sk, -1)  as customer_sk,
        coalesce(p.product_sk, -1)   as product_sk,
        coalesce(s.store_sk, -1)     as store_sk,
        coalesce(g.geography_sk, -1) as geography_sk,
        coalesce(h.velocity, false)  as velocity,
        coalesce(h.above_norm, false) as above_norm
    from lines as l
    left join history_flags as h on h.line_key = l.line_key
    left join customers as c
        on l.customer_id = c.customer_id
        and l.order_date >= c.valid_from and l.order_date < c.valid_to
    left join products as p
        on l.product_id = p.product_id
        and l.order_date >= p.valid_from and l.order_date < p.valid_to
    left join stores as s
        on l.store_id = s.store_id
        and l.order_date >= s.valid_from and l.order_date < s.valid_to
    left join geographies as g
        on  l.city is not distinct from g.city
        and l.state is not distinct from g.state
        and l.country is not distinct from g.country
        and l.postal_code is not distinct from g.postal_code
        and l.region is not distinct from g.region
        and l.market is not distinct from g.market
),

measures as (
    select
        *,
        -- in 38 digits: DuckDB multiplies two 64-bit decimals in 64 bits, which sales
        -- above ~92 billion overflowed; the product (at most sales) fits DECIMAL(18,4)
        cast(round(cast(sales as decimal(38, 4)) * discount, 4) as decimal(18, 4)) as discount_amount
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
    cast(geography_sk as bigint)                          as geography_sk,
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
    is_suspected_fraud or velocity or above_norm          as is_suspected_fraud,
    -- silver's line rules, then the history rules, as codes joined by commas ('' for none)
    concat_ws(
        ',',
        nullif(line_fraud_reasons, ''),
        case when velocity then 'velocity' end,
        case when above_norm then 'quantity_above_norm' end
    )                                                     as fraud_reasons,
    is_outlier,
    dq_score,
    {{ order_month('order_date') }}                       as order_month,
    line_hash                                             as _line_hash
from measures
