-- Every observation of a product's attributes, the input of the product SCD2 history.
-- Sales lines only for now; operational reference changes are unioned here later.
select
    product_id,
    product_name,
    category,
    sub_category,
    order_date        as obs_date,
    order_ts          as obs_ts,
    landed_seq        as obs_seq,
    source_position   as obs_position,
    line_key          as obs_id
from {{ ref('stg_sales_lines') }}
where product_id is not null
