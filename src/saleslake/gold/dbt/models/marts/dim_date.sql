-- Calendar days: whole calendar years covering every order and ship date, plus the
-- unknown date (-1, e.g. the ship date of a line not shipped yet).
-- day_of_week and week_of_year are ISO (Monday = 1). The years come from the facts' date
-- keys (yyyymmdd, -1 = unknown): the same dates as silver's, without scanning silver.
with bounds as (
    select
        least(min(order_date_key) filter (where order_date_key > 0),
              min(ship_date_key) filter (where ship_date_key > 0)) // 10000    as first_year,
        greatest(max(order_date_key), max(ship_date_key)) // 10000             as last_year
    from {{ ref('fact_sales') }}
),

days as (
    select cast(unnest(generate_series(
               cast(make_date(cast(first_year as integer), 1, 1) as timestamp),
               cast(make_date(cast(last_year as integer), 12, 31) as timestamp),
               interval 1 day)) as date) as date
    from bounds
    where first_year is not null
)

select
    {{ date_key('date') }}                     as date_key,
    date,
    cast(year(date) as integer)                as year,
    cast(quarter(date) as integer)             as quarter,
    cast(month(date) as integer)               as month,
    monthname(date)                            as month_name,
    cast(day(date) as integer)                 as day_of_month,
    cast(isodow(date) as integer)              as day_of_week,
    dayname(date)                              as day_name,
    cast(week(date) as integer)                as week_of_year,
    isodow(date) >= 6                          as is_weekend
from days
union all
select
    cast(-1 as integer), cast(null as date), cast(null as integer), cast(null as integer),
    cast(null as integer), 'Unknown', cast(null as integer), cast(null as integer),
    'Unknown', cast(null as integer), cast(null as boolean)
