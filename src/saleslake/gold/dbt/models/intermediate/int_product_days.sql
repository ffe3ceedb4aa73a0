-- The attribute set of each product on each day it was observed (scd2_days in
-- macros/scd2.sql). Incremental: a full build computes every day; an incremental one
-- recomputes the (product, day) pairs of pending lines (pre-hook deletes them, in the
-- same transaction), since a day depends only on its own observations.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{% if is_incremental() %}
        delete from {{ this }} as t using ({{ pending_days('product_id') }}) as d
        where t.product_id = d.natural_key and t.obs_date = d.obs_date
        {% endif %}",
) }}
{{ assert_incremental_state() }}
-- depends_on: {{ ref('int_pending_lines') }}
-- depends_on: {{ ref('int_pending_silver') }}
{{ scd2_days(ref('stg_product_observations'), 'product_id', ['product_name', 'category', 'sub_category'],
             pending_days('product_id') if is_incremental() else none) }}
