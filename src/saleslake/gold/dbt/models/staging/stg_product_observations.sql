-- Every observation of a product's attributes, the input of the product SCD2 history:
-- sales lines and the operational database's reference states
-- (silver.reference_products, effective at their updated_at: CONTRACT §5).
select
    product_id,
    product_name,
    category,
    sub_category,
    {{ observation_columns() }}
from {{ ref('stg_sales_lines') }}
where product_id is not null
  -- a line that names no attribute (a till sale of an unknown product) is no observation
  and (product_name is not null or category is not null or sub_category is not null)
union all
select
    cast(product_id as varchar)     as product_id,
    cast(product_name as varchar)   as product_name,
    cast(category as varchar)       as category,
    cast(sub_category as varchar)   as sub_category,
    {{ reference_observation_columns('product_id') }}
from {{ source('silver', 'reference_products') }}
where product_id is not null and source_system = 'oltp'
