-- Every observation of a customer's attributes, the input of the customer SCD2 history.
-- Sales lines only for now; operational reference changes (effective at updated_at)
-- are unioned here later with the same columns.
select
    customer_id,
    customer_name,
    segment,
    order_date        as obs_date,
    order_ts          as obs_ts,
    landed_seq        as obs_seq,
    source_position   as obs_position,
    line_key          as obs_id
from {{ ref('stg_sales_lines') }}
where customer_id is not null
