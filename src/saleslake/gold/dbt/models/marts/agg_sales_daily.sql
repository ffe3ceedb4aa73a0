-- Daily sales by region (of the line's geography) and category (of the product version
-- valid on the order date): the star schema pre-aggregated for dashboards. Money sums
-- are DECIMAL(38,4), exact.
select
    f.order_date_key                                           as date_key,
    g.region                                                   as region,
    p.category                                                 as category,
    count(distinct (f.source_system, f.order_id))              as orders,
    count(*)                                                   as lines,
    cast(sum(f.quantity) as bigint)                            as quantity,
    cast(sum(f.sales) as decimal(38, 4))                       as sales,
    cast(sum(f.net_sales) as decimal(38, 4))                   as net_sales,
    cast(sum(f.profit) as decimal(38, 4))                      as profit,
    cast(sum(f.tax_amount) as decimal(38, 4))                  as tax_amount,
    count(*) filter (where f.is_suspected_fraud)               as suspected_fraud_lines
from {{ ref('fact_sales') }} as f
left join {{ ref('dim_geography') }} as g on g.geography_sk = f.geography_sk
left join {{ ref('dim_product') }} as p on p.product_sk = f.product_sk
group by all
