-- Every observation of a customer's attributes, the input of the customer SCD2 history:
-- sales lines (attributes as of the order) and the operational database's reference
-- states (silver.reference_customers, effective at their updated_at: CONTRACT §5).
select
    customer_id,
    customer_name,
    segment,
    {{ observation_columns() }}
from {{ ref('stg_sales_lines') }}
where customer_id is not null
  -- a line that names no attribute (a till sale knows only the id) is no observation
  and (customer_name is not null or segment is not null)
union all
select
    cast(customer_id as varchar)    as customer_id,
    cast(customer_name as varchar)  as customer_name,
    cast(segment as varchar)        as segment,
    {{ reference_observation_columns('customer_id') }}
from {{ source('silver', 'reference_customers') }}
where customer_id is not null and source_system = 'oltp'
