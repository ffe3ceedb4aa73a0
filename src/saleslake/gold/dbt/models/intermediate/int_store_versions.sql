-- This build's SCD2 versions, with their surrogate keys (business time, see
-- macros/scd2.sql), from int_store_days: of every store on a full build; on an
-- incremental one of the stores with pending days (a key's versions depend only on its days).
-- depends_on: {{ ref('int_pending_lines') }}
-- depends_on: {{ ref('int_pending_silver') }}
{{ scd2_dimension_versions(
    ref('int_store_days'), 'store_sk', 'store_id',
    ['store_name', 'channel', 'city', 'state', 'country', 'region', 'market'],
    none if gold_full_build() else pending_keys('store_id'),
) }}
