-- The silver values of the pending lines still in silver (read once, by the SCD2 days,
-- int_geography, int_product_quantity_days, int_fraud_scope and int_fact_recompute).
-- With silver_diff 'files' every pending line is one this build found (build_gold
-- compares files only when nothing was pending), so those still in silver are in the
-- added files; otherwise silver is scanned. Empty on a full build.
-- depends_on: {{ ref('int_pending_lines') }}
-- depends_on: {{ ref('stg_sales_lines') }}
select line_key, order_date, customer_id, product_id, store_id, {{ geography_columns() }},
       order_ts, {{ velocity_key() }} as velocity_key
{%- if gold_full_build() %}
from {{ ref('stg_sales_lines') }}
where false
{%- elif env_var('SALESLAKE_SILVER_DIFF', 'full') == 'files' %}
from ({{ sales_lines_select(silver_relation('sales_lines_added')) }})
where line_key in (select line_key from {{ ref('int_pending_lines') }})
{%- else %}
from {{ ref('stg_sales_lines') }}
where line_key in (select line_key from {{ ref('int_pending_lines') }})
{%- endif %}
