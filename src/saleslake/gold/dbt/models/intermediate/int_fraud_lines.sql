-- Every judged line (a silver line with an event time) with its history fraud flags
-- (macros/fraud.sql): velocity and above_norm, and what it is to those rules (product,
-- order date, event time, velocity key: int_pending_lines keeps them when the line
-- becomes pending). fact_sales takes the flags from here.
--
-- Incremental: a full build decides every judged line; an incremental one replaces the
-- lines int_fraud_evaluated re-decided and drops the pending lines no longer judged. In
-- the same transaction, the pre-hook records in gold_state.pending_fraud the lines whose
-- flags changed, so their facts are recomputed and published even if this build dies
-- after this model (cleared when a release is recorded).
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook=[
        "{% if is_incremental() %}
        insert into {{ pending_fraud() }} (line_key, order_date)
        select e.line_key, e.order_date
        from {{ ref('int_fraud_evaluated') }} as e
        join {{ this }} as t on t.line_key = e.line_key
        where t.velocity <> e.velocity or t.above_norm <> e.above_norm
        {% endif %}",
        "{% if is_incremental() %}
        delete from {{ this }}
        where line_key in (select line_key from {{ ref('int_fraud_evaluated') }})
           or line_key in (select line_key from {{ ref('int_pending_lines') }})
        {% endif %}",
    ],
) }}
{{ assert_incremental_state() }}
-- depends_on: {{ ref('int_fraud_evaluated') }}
-- depends_on: {{ ref('int_pending_lines') }}
-- depends_on: {{ ref('int_product_quantity_days') }}
-- depends_on: {{ ref('int_fraud_scope') }}
-- depends_on: {{ ref('stg_sales_lines') }}
{%- if is_incremental() %}
select line_key, product_id, order_date, order_ts, velocity_key, velocity, above_norm
from {{ ref('int_fraud_evaluated') }}
{%- else %}
{{ fraud_flags(scoped=false) }}
{%- endif %}
