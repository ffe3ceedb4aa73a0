-- Customers, SCD Type 2 in business time, with the unknown member (-1).
{{ scd2_dimension(ref('int_customer_history'), 'customer_sk', 'customer_id',
                  ['customer_name', 'segment']) }}
