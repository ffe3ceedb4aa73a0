-- Stores, SCD Type 2 in business time, with the unknown member (-1). With CSV-only data
-- (no line has a store) it holds just the unknown member.
{{ scd2_dimension(ref('int_store_history'), 'store_sk', 'store_id',
                  ['store_name', 'channel', 'city', 'state', 'country', 'region', 'market']) }}
