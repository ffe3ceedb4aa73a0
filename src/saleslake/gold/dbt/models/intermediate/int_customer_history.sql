-- SCD2 versions of customers (business time, see macros/scd2.sql).
{{ scd2_versions(ref('stg_customer_observations'), 'customer_id', ['customer_name', 'segment']) }}
