-- agg_sales_daily adds up to fact_sales (lines, quantity, sales, net sales, profit, tax).
with agg as (
    select coalesce(sum(lines), 0) as lines, coalesce(sum(quantity), 0) as quantity,
           coalesce(sum(sales), 0) as sales, coalesce(sum(net_sales), 0) as net_sales,
           coalesce(sum(profit), 0) as profit, coalesce(sum(tax_amount), 0) as tax_amount
    from {{ ref('agg_sales_daily') }}
),
fact as (
    select count(*) as lines, coalesce(sum(quantity), 0) as quantity,
           coalesce(sum(sales), 0) as sales, coalesce(sum(net_sales), 0) as net_sales,
           coalesce(sum(profit), 0) as profit, coalesce(sum(tax_amount), 0) as tax_amount
    from {{ ref('fact_sales') }}
)
select agg.lines as agg_lines, fact.lines as fact_lines,
       agg.sales as agg_sales, fact.sales as fact_sales
from agg, fact
where agg.lines <> fact.lines or agg.quantity <> fact.quantity or agg.sales <> fact.sales
   or agg.net_sales <> fact.net_sales or agg.profit is distinct from fact.profit
   or agg.tax_amount is distinct from fact.tax_amount
