-- Daily sales by region (of the line's geography) and category (of the product version
-- valid on the order date): the star schema pre-aggregated for dashboards. Money sums
-- are DECIMAL(38,4), exact.
--
-- Incremental: a full build aggregates every fact; an incremental one recomputes the
-- days of the recomputed facts and the days pending lines had (the pre-hook deletes
-- those days, in the same transaction), since a day is the unit its distinct order
-- count can be recomputed from.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{% if is_incremental() %}delete from {{ this }} where date_key in ({{ agg_affected_days() }}){% endif %}",
) }}
{{ assert_incremental_state() }}
-- depends_on: {{ ref('int_pending_lines') }}
-- depends_on: {{ ref('int_fact_recompute') }}
select
    f.order_date_key                                           as date_key,
    -- never NULL (a line's geography without a region, a product without a category):
    -- the grain is the warehouse's primary key; 'Unknown' as for the unknown members
    coalesce(g.region, 'Unknown')                              as region,
    coalesce(p.category, 'Unknown')                            as category,
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
{%- if is_incremental() %}
where f.order_date_key in ({{ agg_affected_days() }})
{%- endif %}
group by all
