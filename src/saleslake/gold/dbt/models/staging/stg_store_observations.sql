-- Every observation of a store's attributes, the input of the store SCD2 history.
-- From sales lines with a store (point-of-sale lines carry the store's location);
-- the name comes only from reference data, unioned here later, and the channel is the
-- source kind (`pos`, `oltp`, `csv`). CSV-only data has no store lines.
select
    store_id,
    cast(null as varchar)                 as store_name,
    split_part(source_system, ':', 1)     as channel,
    city,
    state,
    country,
    region,
    market,
    {{ observation_columns() }}
from {{ ref('stg_sales_lines') }}
where store_id is not null
