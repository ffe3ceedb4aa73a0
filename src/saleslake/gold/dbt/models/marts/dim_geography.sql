-- Geographies of the lines (those facts point at), with the unknown member (-1) for
-- lines without any.
select
    geography_sk,
    {{ geography_columns() }}
from {{ ref('int_geography') }}
where geography_sk in (select geography_sk from {{ ref('fact_sales') }})
union all
select
    cast(-1 as bigint) as geography_sk,
    'Unknown' as city,
    'Unknown' as state,
    'Unknown' as country,
    'Unknown' as postal_code,
    'Unknown' as region,
    'Unknown' as market
