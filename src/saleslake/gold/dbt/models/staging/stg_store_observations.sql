-- Every observation of a store's attributes, the input of the store SCD2 history.
-- From sales lines with a store (point-of-sale lines carry the store's location; the
-- channel is the source kind, `pos` or `csv`), and from the operational database's
-- reference states (silver.reference_stores, effective at their updated_at, with name
-- and channel). Operational order lines are no store observation: their geography is
-- the ship-to address, the store's own comes from its reference state.
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
where store_id is not null and source_system <> 'oltp'
union all
select
    cast(store_id as varchar)     as store_id,
    cast(store_name as varchar)   as store_name,
    cast(channel as varchar)      as channel,
    cast(city as varchar)         as city,
    cast(state as varchar)        as state,
    cast(country as varchar)      as country,
    cast(region as varchar)       as region,
    cast(market as varchar)       as market,
    {{ reference_observation_columns('store_id') }}
from {{ source('silver', 'reference_stores') }}
where store_id is not null and source_system = 'oltp'
