-- Stores, SCD Type 2 in business time, with the unknown member (-1). With CSV-only data
-- (no line has a store) it holds just the unknown member.
-- Incremental: a full build writes every version; an incremental one replaces only the
-- stores whose versions changed (int_store_changes) and records the changed intervals
-- for the facts, in the same transaction (macros/scd2.sql).
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook=[
        "{{ scd2_record_changes('store', ref('int_store_changes'), 'store_id') }}",
        "{{ scd2_delete_changed(ref('int_store_changes'), 'store_id') }}",
    ],
) }}
-- depends_on: {{ ref('int_store_changes') }}
{{ scd2_dimension(ref('int_store_versions'), ref('int_store_changes'), 'store_sk', 'store_id',
                  ['store_name', 'channel', 'city', 'state', 'country', 'region', 'market']) }}
