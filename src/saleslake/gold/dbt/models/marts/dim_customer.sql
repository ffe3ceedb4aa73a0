-- Customers, SCD Type 2 in business time, with the unknown member (-1).
-- Incremental: a full build writes every version; an incremental one replaces only the
-- customers whose versions changed (int_customer_changes) and records the changed intervals
-- for the facts, in the same transaction (macros/scd2.sql).
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook=[
        "{{ scd2_record_changes('customer', ref('int_customer_changes'), 'customer_id') }}",
        "{{ scd2_delete_changed(ref('int_customer_changes'), 'customer_id') }}",
    ],
) }}
-- depends_on: {{ ref('int_customer_changes') }}
{{ scd2_dimension(ref('int_customer_versions'), ref('int_customer_changes'), 'customer_sk', 'customer_id',
                  ['customer_name', 'segment']) }}
