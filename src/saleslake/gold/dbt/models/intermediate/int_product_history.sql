-- SCD2 versions of products (business time, see macros/scd2.sql).
{{ scd2_versions(ref('stg_product_observations'), 'product_id', ['product_name', 'category', 'sub_category']) }}
