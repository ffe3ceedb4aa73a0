-- Every observation of a product's attributes, the input of the product SCD2 history.
-- Sales lines only for now; operational reference changes are unioned here later.
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
