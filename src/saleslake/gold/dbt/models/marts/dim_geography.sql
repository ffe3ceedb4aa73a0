-- Geographies of the lines, with the unknown member (-1) for lines without any.
select
    geography_sk,
    {{ geography_columns() }}
from {{ ref('int_geography') }}
union all
select
    cast(-1 as bigint) as geography_sk,
    'Unknown' as city,
    'Unknown' as state,
    'Unknown' as country,
    'Unknown' as postal_code,
    'Unknown' as region,
    'Unknown' as market
