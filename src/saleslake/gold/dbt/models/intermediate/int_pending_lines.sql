-- Pending lines: silver lines whose fact must be recomputed or deleted because they are
-- new, changed (another line_hash) or gone from silver, with the natural keys, order
-- date and month their fact had (NULL when there is none). Rows accumulate (append)
-- until the build that handled them is published: build_gold clears this table after
-- the release is recorded, so work a crashed build did but did not publish is done (and
-- published) again. Empty on a full build.
--
-- How lines are compared (env var SALESLAKE_SILVER_DIFF, chosen by build_gold):
--   files: only silver's Parquet files added since the previous build are compared with
--          the files removed since (silver.sales_lines_added / _removed; files are
--          immutable, so a line in a file both snapshots hold did not change). The
--          post-hook records the current file list, in this model's transaction: from
--          then on the lines of the difference are pending.
--   full:  every silver line is compared with gold.fact_sales (when the previous file
--          list is unknown or a removed file is gone).
--
-- The old natural keys come from the current dimensions (the fact holds surrogate keys);
-- what a judged line was to the history fraud rules (product, order date, event time,
-- velocity key) from int_fraud_lines before this build (macros/fraud.sql).
-- Dimensions are never behind the fact; when they are ahead (a build died after updating
-- them), a fact's old version may be gone, but its key is then already pending: the
-- lines of that build are still here.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    post_hook=[
        "delete from {{ silver_files('silver_files') }}",
        "insert into {{ silver_files('silver_files') }} select path from {{ silver_files('silver_files_now') }}",
    ],
) }}
{{ assert_incremental_state() }}
-- depends_on: {{ ref('stg_sales_lines') }}

{%- if is_incremental() %}
with
{%- if env_var('SALESLAKE_SILVER_DIFF', 'full') == 'files' %}
added as (
    select line_key, line_hash from ({{ sales_lines_select(silver_relation('sales_lines_added')) }})
),

removed as (
    select line_key, line_hash from ({{ sales_lines_select(silver_relation('sales_lines_removed')) }})
),

changed as (
    select coalesce(a.line_key, r.line_key) as line_key
    from added as a
    full join removed as r on a.line_key = r.line_key
    where a.line_key is null or r.line_key is null or a.line_hash <> r.line_hash
),
{%- else %}
silver as (
    select line_key, line_hash from {{ ref('stg_sales_lines') }}
),

fact_hashes as (
    select line_key, _line_hash from {{ current_gold('fact_sales') }}
),

changed as (
    select coalesce(s.line_key, f.line_key) as line_key
    from silver as s
    full join fact_hashes as f on s.line_key = f.line_key
    where s.line_key is null or f.line_key is null or s.line_hash <> f._line_hash
),
{%- endif %}

old_facts as (
    select f.line_key, f.customer_sk, f.product_sk, f.store_sk, f.order_date_key, f.order_month
    from {{ current_gold('fact_sales') }} as f
    where f.line_key in (select line_key from changed)
)

select
    c.line_key,
    dc.customer_id                       as old_customer_id,
    dp.product_id                        as old_product_id,
    ds.store_id                          as old_store_id,
    f.order_date_key                     as old_order_date_key,
    f.order_month                        as old_order_month,
    fl.product_id                        as old_judged_product_id,
    fl.order_date                        as old_judged_order_date,
    fl.order_ts                          as old_order_ts,
    fl.velocity_key                      as old_velocity_key
from changed as c
left join old_facts as f on f.line_key = c.line_key
left join {{ current_gold('dim_customer') }} as dc on dc.customer_sk = f.customer_sk
left join {{ current_gold('dim_product') }} as dp on dp.product_sk = f.product_sk
left join {{ current_gold('dim_store') }} as ds on ds.store_sk = f.store_sk
left join {{ current_intermediate('int_fraud_lines') }} as fl on fl.line_key = c.line_key
except
select * from {{ this }}
{%- else %}
select
    cast(null as varchar) as line_key,
    cast(null as varchar) as old_customer_id,
    cast(null as varchar) as old_product_id,
    cast(null as varchar) as old_store_id,
    cast(null as integer) as old_order_date_key,
    cast(null as varchar) as old_order_month,
    cast(null as varchar) as old_judged_product_id,
    cast(null as date) as old_judged_order_date,
    cast(null as timestamptz) as old_order_ts,
    cast(null as varchar) as old_velocity_key
where false
{%- endif %}
