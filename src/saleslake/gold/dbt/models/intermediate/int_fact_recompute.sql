-- Lines whose fact is (re)computed by an incremental build: pending lines still in silver,
-- lines whose customer, product or store version changed on their order date
-- (gold_state.pending_versions, recorded by the dimensions of this and of unpublished
-- builds), and lines whose history fraud flags changed (gold_state.pending_fraud,
-- recorded by int_fraud_lines of this and of unpublished builds). Empty on a full build
-- (every fact is computed). Also what publish merges into the Delta fact, and whose days
-- agg_sales_daily recomputes.
-- depends_on: {{ ref('dim_customer') }}
-- depends_on: {{ ref('dim_product') }}
-- depends_on: {{ ref('dim_store') }}
-- depends_on: {{ ref('int_pending_silver') }}
-- depends_on: {{ ref('stg_sales_lines') }}
-- depends_on: {{ ref('int_fraud_lines') }}
{%- if gold_full_build() %}
select cast(null as varchar) as line_key, cast(null as date) as order_date, cast(null as integer) as order_date_key
where false
{%- else %}
{#- the earliest changed date, as a literal, so silver's files are pruned by their statistics -#}
{%- set since = none -%}
{%- set fraud_days = none -%}
{%- if execute -%}
    {%- set since = run_query('select min(valid_from) from ' ~ pending_versions()).columns[0].values()[0] -%}
    {%- set fraud_days = run_query('select min(order_date), max(order_date) from ' ~ pending_fraud()).rows[0] -%}
{%- endif %}
with
{%- if since is not none %}
changed as (
    select dimension, natural_key, valid_from, valid_to from {{ pending_versions() }}
),

-- silver lines of changed keys on or after the earliest changed date
candidates as (
    select line_key, order_date, customer_id, product_id, store_id
    from {{ ref('stg_sales_lines') }}
    where order_date >= cast('{{ since }}' as date)
      and (   customer_id in (select natural_key from changed where dimension = 'customer')
           or product_id in (select natural_key from changed where dimension = 'product')
           or store_id in (select natural_key from changed where dimension = 'store'))
),
{%- endif %}

-- the candidates in a changed interval of their key (one equality join per dimension:
-- an OR of the three would not hash), and the pending lines
lines as (
{%- if since is not none %}
{%- for dim in ['customer', 'product', 'store'] %}
    select l.line_key, l.order_date
    from candidates as l
    join changed as c
        on  c.dimension = '{{ dim }}' and c.natural_key = l.{{ dim }}_id
        and l.order_date >= c.valid_from and l.order_date < c.valid_to
    union
{%- endfor %}
{%- endif %}
{%- if fraud_days is not none and fraud_days[0] is not none %}
    -- lines whose fraud flags changed, still in silver
    select line_key, order_date
    from {{ ref('stg_sales_lines') }}
    where order_date between cast('{{ fraud_days[0] }}' as date) and cast('{{ fraud_days[1] }}' as date)
      and line_key in (select line_key from {{ pending_fraud() }})
    union
{%- endif %}
    select line_key, order_date from {{ ref('int_pending_silver') }}
)

select line_key, order_date, {{ date_key('order_date') }} as order_date_key
from lines
{%- endif %}
