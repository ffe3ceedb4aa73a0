-- CONTRACT §5: fact_sales has one row per silver line and the same total sales.
with fact as (
    select count(*) as n, coalesce(sum(sales), 0) as sales from {{ ref('fact_sales') }}
),
silver as (
    select count(*) as n, coalesce(sum(sales), 0) as sales from {{ source('silver', 'sales_lines') }}
)
select fact.n as fact_rows, silver.n as silver_rows, fact.sales as fact_sales, silver.sales as silver_sales
from fact, silver
where fact.n <> silver.n or fact.sales <> silver.sales
