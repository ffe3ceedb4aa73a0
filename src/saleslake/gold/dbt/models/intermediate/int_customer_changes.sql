-- Validity intervals on which a customer's version changed in this build: gold.dim_customer
-- as it is before this build (dim_customer runs after this model) against
-- int_customer_versions (the customers with pending days). Empty on a full build. See
-- scd2_changes in macros/scd2.sql.
-- depends_on: {{ ref('int_pending_lines') }}
-- depends_on: {{ ref('int_pending_silver') }}
-- depends_on: {{ ref('int_customer_versions') }}
{%- if gold_full_build() %}
select cast(null as varchar) as customer_id, cast(null as date) as valid_from, cast(null as date) as valid_to
where false
{%- else %}
{{ scd2_changes(
    current_gold('dim_customer'), ref('int_customer_versions'), 'customer_sk', 'customer_id',
    ['customer_name', 'segment'],
    pending_keys('customer_id'),
) }}
{%- endif %}
