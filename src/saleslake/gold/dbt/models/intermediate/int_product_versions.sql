-- This build's SCD2 versions, with their surrogate keys (business time, see
-- macros/scd2.sql), from int_product_days: of every product on a full build; on an
-- incremental one of the products with pending days (a key's versions depend only on its days).
-- depends_on: {{ ref('int_pending_lines') }}
-- depends_on: {{ ref('int_pending_silver') }}
{{ scd2_dimension_versions(
    ref('int_product_days'), 'product_sk', 'product_id',
    ['product_name', 'category', 'sub_category'],
    none if gold_full_build() else pending_keys('product_id'),
) }}
