-- Geographies (city, state, country, postal code, region, market) of the lines, keyed by
-- the hash of the six columns; lines with all six NULL map to -1 (not listed here).
-- Incremental and add-only: a full build lists the distinct geographies of silver; an
-- incremental one adds those of pending lines not listed yet. Geographies no line has
-- any more stay listed (a key never changes meaning) but dim_geography drops them.
{{ config(materialized='incremental', incremental_strategy='append', on_schema_change='fail') }}
{{ assert_incremental_state() }}
-- depends_on: {{ ref('int_pending_silver') }}
with geographies as (
    select distinct {{ geography_columns() }}
    {%- if is_incremental() %}
    from {{ ref('int_pending_silver') }}
    {%- else %}
    from {{ ref('stg_sales_lines') }}
    {%- endif %}
    where not (city is null and state is null and country is null
               and postal_code is null and region is null and market is null)
)

select
    {{ geography_sk() }} as geography_sk,
    {{ geography_columns() }}
from geographies
{%- if is_incremental() %}
where {{ geography_sk() }} not in (select geography_sk from {{ this }})
{%- endif %}
