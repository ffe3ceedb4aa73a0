-- Per product and order date, the judged lines (lines with an event time) and their total
-- quantity: the evidence of quantity_above_norm for whole days (macros/fraud.sql).
-- Incremental: a full build counts every day; an incremental one recounts the (product,
-- day) pairs of pending lines (pre-hook deletes them, in the same transaction).
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{% if is_incremental() %}
        delete from {{ this }} as t using ({{ pending_judged_days() }}) as d
        where t.product_id = d.product_id and t.order_date = d.order_date
        {% endif %}",
) }}
{{ assert_incremental_state() }}
-- depends_on: {{ ref('int_pending_lines') }}
-- depends_on: {{ ref('int_pending_silver') }}
{%- if is_incremental() %}
{%- set since = none -%}
{%- if execute -%}
    {%- set since = run_query('select min(order_date), max(order_date) from (' ~ pending_judged_days() ~ ')').rows[0] -%}
{%- endif %}
{%- endif %}
select l.product_id, l.order_date, count(*) as lines, sum(l.quantity) as quantity
from {{ ref('stg_sales_lines') }} as l
{%- if is_incremental() %}
join ({{ pending_judged_days() }}) as d on d.product_id = l.product_id and d.order_date = l.order_date
{%- endif %}
where l.order_ts is not null and l.product_id is not null
{%- if is_incremental() %}
  {%- if since is not none and since[0] is not none %}
  -- literal dates, so silver's files are pruned by their statistics
  and l.order_date between cast('{{ since[0] }}' as date) and cast('{{ since[1] }}' as date)
  {%- else %}
  and false
  {%- endif %}
{%- endif %}
group by l.product_id, l.order_date
