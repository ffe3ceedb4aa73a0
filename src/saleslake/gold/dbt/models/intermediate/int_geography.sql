-- Distinct geographies (city, state, country, postal code, region, market) of the
-- lines, keyed by the hash of the six columns; lines with all six NULL map to -1.
with geographies as (
    select distinct {{ geography_columns() }}
    from {{ ref('stg_sales_lines') }}
    where not (city is null and state is null and country is null
               and postal_code is null and region is null and market is null)
)

select
    {{ geography_sk() }} as geography_sk,
    {{ geography_columns() }}
from geographies
