-- Validity intervals on which a store's version changed in this build: gold.dim_store
-- as it is before this build (dim_store runs after this model) against
-- int_store_versions (the stores with pending days). Empty on a full build. See
-- scd2_changes in macros/scd2.sql.
-- depends_on: {{ ref('int_pending_lines') }}
-- depends_on: {{ ref('int_pending_silver') }}
-- depends_on: {{ ref('int_store_versions') }}
{%- if gold_full_build() %}
select cast(null as varchar) as store_id, cast(null as date) as valid_from, cast(null as date) as valid_to
where false
{%- else %}
{{ scd2_changes(
    current_gold('dim_store'), ref('int_store_versions'), 'store_sk', 'store_id',
    ['store_name', 'channel', 'city', 'state', 'country', 'region', 'market'],
    pending_keys('store_id'),
) }}
{%- endif %}
