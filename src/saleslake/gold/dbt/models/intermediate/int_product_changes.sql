-- Validity intervals on which a product's version changed in this build: gold.dim_product
-- as it is before this build (dim_product runs after this model) against
-- int_product_versions (the products with pending days). Empty on a full build. See
-- scd2_changes in macros/scd2.sql.
-- depends_on: {{ ref('int_pending_lines') }}
-- depends_on: {{ ref('int_pending_silver') }}
-- depends_on: {{ ref('int_product_versions') }}
{%- if gold_full_build() %}
select cast(null as varchar) as product_id, cast(null as date) as valid_from, cast(null as date) as valid_to
where false
{%- else %}
{{ scd2_changes(
    current_gold('dim_product'), ref('int_product_versions'), 'product_sk', 'product_id',
    ['product_name', 'category', 'sub_category'],
    pending_keys('product_id'),
) }}
{%- endif %}
