-- What the pending lines changed in the evidence of the history fraud rules
-- (macros/fraud.sql), and so which judged lines an incremental build re-decides:
--   rule 'norm', scope_key a product: its judged lines on the days first_day .. last_day
--     (the order dates its pending lines had and have, up to quantity_norm_days later);
--   rule 'velocity', scope_key a velocity key: its transactions with an event time in
--     first_us .. last_us (epoch microseconds: the pending lines' event times up to
--     velocity_window_seconds later); first_day .. last_day are the order dates of their
--     evidence (from velocity_window_seconds before first_us).
-- "Had": as int_fraud_lines held them when the line became pending (int_pending_lines).
-- Empty on a full build (every judged line is decided).
-- depends_on: {{ ref('int_pending_lines') }}
-- depends_on: {{ ref('int_pending_silver') }}
{%- set window_us = (fraud_setting('velocity_window_seconds') | int) * 1000000 %}
{%- set norm_days = fraud_setting('quantity_norm_days') | int %}
{%- if gold_full_build() %}
select cast(null as varchar) as rule, cast(null as varchar) as scope_key, cast(null as date) as first_day,
       cast(null as date) as last_day, cast(null as bigint) as first_us, cast(null as bigint) as last_us
where false
{%- else %}
with changes as (
    select old_judged_product_id as product_id, old_judged_order_date as order_date,
           {{ to_epoch_us('old_order_ts') }} as ts_us, old_velocity_key as velocity_key
    from {{ ref('int_pending_lines') }}
    where old_order_ts is not null
    union all
    select product_id, order_date, {{ to_epoch_us('order_ts') }}, velocity_key
    from {{ ref('int_pending_silver') }}
    where order_ts is not null
)

select 'norm' as rule, product_id as scope_key, min(order_date) as first_day,
       {{ add_days('max(order_date)', norm_days) }} as last_day,
       cast(null as bigint) as first_us, cast(null as bigint) as last_us
from changes
where product_id is not null
group by product_id
union all
select 'velocity', velocity_key,
       -- the order dates of the evidence (a judged line's order date is the UTC date of
       -- its event time), a day of margin either side
       {{ add_days('min(order_date)', -((window_us // 86400000000) + 1)) }},
       {{ add_days('max(order_date)', (window_us // 86400000000) + 1) }},
       min(ts_us), max(ts_us) + {{ window_us }}
from changes
where velocity_key is not null
group by velocity_key
{%- endif %}
