{#- The typed columns gold reads from silver sales lines (any relation with the silver
    schema: the snapshot, or the files added or removed since the last build), and
    line_hash: a 64-bit fingerprint of every column gold reads (silver's row_hash covers
    the business content, card and event time included; the rest are the store, the landing
    order and the values silver derives). -#}
{% macro sales_lines_select(relation) -%}
select
    cast(line_key as varchar)            as line_key,
    cast(source_system as varchar)       as source_system,
    cast(order_id as varchar)            as order_id,
    cast(line_id as varchar)             as line_id,
    cast(order_date as date)             as order_date,
    cast(order_ts as timestamptz)        as order_ts,
    cast(ship_date as date)              as ship_date,
    cast(ship_mode as varchar)           as ship_mode,
    cast(order_priority as varchar)      as order_priority,
    cast(customer_id as varchar)         as customer_id,
    cast(customer_name as varchar)       as customer_name,
    cast(segment as varchar)             as segment,
    cast(city as varchar)                as city,
    cast(state as varchar)               as state,
    cast(country as varchar)             as country,
    cast(postal_code as varchar)         as postal_code,
    cast(market as varchar)              as market,
    cast(region as varchar)              as region,
    cast(store_id as varchar)            as store_id,
    cast(product_id as varchar)          as product_id,
    cast(product_name as varchar)        as product_name,
    cast(category as varchar)            as category,
    cast(sub_category as varchar)        as sub_category,
    cast(quantity as bigint)             as quantity,
    cast(unit_price as decimal(18, 4))   as unit_price,
    cast(sales as decimal(18, 4))        as sales,
    cast(discount as decimal(9, 4))      as discount,
    cast(profit as decimal(18, 4))       as profit,
    cast(shipping_cost as decimal(18, 4)) as shipping_cost,
    cast(currency as varchar)            as currency,
    cast(tax_rate as decimal(9, 4))      as tax_rate,
    cast(tax_amount as decimal(18, 4))   as tax_amount,
    cast(is_suspected_fraud as boolean)  as is_suspected_fraud,
    -- the line rules silver decided (the history rules are gold's: macros/fraud.sql)
    {{ reasons_text('fraud_reasons') }}  as line_fraud_reasons,
    cast(card_fingerprint as varchar)    as card_fingerprint,
    cast(is_outlier as boolean)          as is_outlier,
    cast(dq_score as integer)            as dq_score,
    cast(landed_seq as bigint)           as landed_seq,
    cast(source_position as varchar)     as source_position,
    hash(
        row_hash, store_id, order_ts, landed_seq, source_position,
        unit_price, tax_amount, is_suspected_fraud, fraud_reasons, is_outlier, dq_score
    )                                    as line_hash
from {{ relation }}
{%- endmacro %}

{#- A relation build_gold registers in the warehouse's silver schema. -#}
{% macro silver_relation(name) -%}
    {{ return(api.Relation.create(database=target.database, schema='silver', identifier=name)) }}
{%- endmacro %}

{#- The columns every SCD2 observation carries (see scd2_versions), from a sales line. -#}
{% macro observation_columns() -%}
    order_date        as obs_date,
    order_ts          as obs_ts,
    landed_seq        as obs_seq,
    source_position   as obs_position,
    line_key          as obs_id
{%- endmacro %}

{#- The observation columns of a reference state (silver.reference_*): effective at its
    updated_at (business time of the operational record), after any sales line of the
    same instant (obs_seq NULL sorts first). -#}
{% macro reference_observation_columns(natural_key) -%}
    cast(timezone('UTC', updated_at) as date)    as obs_date,
    cast(updated_at as timestamptz)              as obs_ts,
    cast(null as bigint)                         as obs_seq,
    'reference:' || source_system                as obs_position,
    'ref:' || {{ natural_key }} || ':' || cast(epoch_us(updated_at) as varchar) as obs_id
{%- endmacro %}
