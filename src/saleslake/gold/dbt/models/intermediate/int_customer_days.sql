-- The attribute set of each customer on each day it was observed (scd2_days in
-- macros/scd2.sql). Incremental: a full build computes every day; an incremental one
-- recomputes the (customer, day) pairs of pending lines (pre-hook deletes them, in the
-- same transaction), since a day depends only on its own observations.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{% if is_incremental() %}
        delete from {{ this }} as t using ({{ pending_days('customer_id') }}) as d
        where t.customer_id = d.natural_key and t.obs_date = d.obs_date
        {% endif %}",
) }}
{{ assert_incremental_state() }}
-- depends_on: {{ ref('int_pending_lines') }}
-- depends_on: {{ ref('int_pending_silver') }}
{{ scd2_days(ref('stg_customer_observations'), 'customer_id', ['customer_name', 'segment'],
             pending_days('customer_id') if is_incremental() else none) }}
