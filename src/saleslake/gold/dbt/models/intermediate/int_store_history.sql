-- SCD2 versions of stores (business time, see macros/scd2.sql).
{{ scd2_versions(ref('stg_store_observations'), 'store_id',
                 ['store_name', 'channel', 'city', 'state', 'country', 'region', 'market']) }}
