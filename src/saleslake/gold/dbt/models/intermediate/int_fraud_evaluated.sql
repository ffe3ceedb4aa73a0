-- The history fraud flags of the judged lines an incremental build re-decides: those
-- int_fraud_scope reaches (macros/fraud.sql), with their product, order date, event time
-- and velocity key. Empty on a full build (int_fraud_lines decides every line).
-- depends_on: {{ ref('int_fraud_scope') }}
-- depends_on: {{ ref('int_product_quantity_days') }}
-- depends_on: {{ ref('stg_sales_lines') }}
{%- if gold_full_build() %}
select cast(null as varchar) as line_key, cast(null as varchar) as product_id, cast(null as date) as order_date,
       cast(null as timestamptz) as order_ts, cast(null as varchar) as velocity_key,
       cast(null as boolean) as velocity, cast(null as boolean) as above_norm
where false
{%- else %}
{{ fraud_flags(scoped=true, previous=current_intermediate('int_fraud_lines')) }}
{%- endif %}
