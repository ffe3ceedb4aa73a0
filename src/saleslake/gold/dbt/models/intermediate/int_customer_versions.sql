-- This build's SCD2 versions, with their surrogate keys (business time, see
-- macros/scd2.sql), from int_customer_days: of every customer on a full build; on an
-- incremental one of the customers with pending days (a key's versions depend only on its days).
-- depends_on: {{ ref('int_pending_lines') }}
-- depends_on: {{ ref('int_pending_silver') }}
{{ scd2_dimension_versions(
    ref('int_customer_days'), 'customer_sk', 'customer_id',
    ['customer_name', 'segment'],
    none if gold_full_build() else pending_keys('customer_id'),
) }}
