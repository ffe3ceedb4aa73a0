-- Products, SCD Type 2 in business time, with the unknown member (-1).
-- Incremental: a full build writes every version; an incremental one replaces only the
-- products whose versions changed (int_product_changes) and records the changed intervals
-- for the facts, in the same transaction (macros/scd2.sql).
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook=[
        "{{ scd2_record_changes('product', ref('int_product_changes'), 'product_id') }}",
        "{{ scd2_delete_changed(ref('int_product_changes'), 'product_id') }}",
    ],
) }}
-- depends_on: {{ ref('int_product_changes') }}
{{ scd2_dimension(ref('int_product_versions'), ref('int_product_changes'), 'product_sk', 'product_id',
                  ['product_name', 'category', 'sub_category']) }}
