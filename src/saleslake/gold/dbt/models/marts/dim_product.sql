-- Products, SCD Type 2 in business time, with the unknown member (-1).
{{ scd2_dimension(ref('int_product_history'), 'product_sk', 'product_id',
                  ['product_name', 'category', 'sub_category']) }}
