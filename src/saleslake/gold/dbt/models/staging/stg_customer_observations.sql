-- Every observation of a customer's attributes, the input of the customer SCD2 history.
-- Sales lines only for now; operational reference changes (effective at updated_at)
-- are unioned here later with the same columns.
select
    customer_id,
    customer_name,
    segment,
    {{ observation_columns() }}
from {{ ref('stg_sales_lines') }}
where customer_id is not null
  -- a line that names no attribute (a till sale knows only the id) is no observation
  and (customer_name is not null or segment is not null)
