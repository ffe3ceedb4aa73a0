{#-
  The fraud rules that need history (CONTRACT §7), decided in gold from the whole of
  silver, so a line's flags are a pure function of the silver lines: the same lines give
  the same flags however they were batched, in whatever order they arrived, across
  restarts and crashes. Silver keeps the rules that look at one line only (amount above
  the threshold, high discount on a high amount) in its fraud_reasons.

  Judged lines: the lines with an event time (order_ts: point of sale, operational
  database). A CSV line has only a date, so it can be neither placed before or after a sale
  of its day nor judged; it is no evidence either.

  - velocity: a card's transactions (or a customer's, when the payment names no card;
    never a walk-in's), per source: the velocity key. A transaction (source, order id,
    event time, key) is flagged when its key has more than
    fraud.velocity_max_transactions transactions with an event time in
    [t - fraud.velocity_window_seconds, t] (transactions at the same instant count for each
    other: no arbitrary order among them). Every line of a flagged transaction is flagged.
  - quantity_above_norm: a line's quantity is above fraud.quantity_norm_multiple times the
    mean quantity of its product's judged lines from the start of the UTC day
    fraud.quantity_norm_days days before its order date up to its event time (exclusive:
    the lines of the same instant, its own transaction's included, are not its evidence),
    once those are at least fraud.quantity_norm_min_lines lines. The comparison is exact
    (quantity x lines > multiple x sum of quantities, in decimals: no division).

  Incremental builds: a pending line (new, changed or gone) changes the evidence of its
  product on its order date and of its velocity key at its event time, before (as
  int_fraud_lines held it) and now (silver). Flags can change only for lines of that
  product on that day up to quantity_norm_days days later, and for transactions of that key
  up to velocity_window_seconds later: int_fraud_scope bounds them, int_fraud_evaluated
  re-decides them, int_fraud_lines keeps every judged line's flags and records the lines
  whose flags changed in gold_state.pending_fraud (in its transaction, kept until
  published, like pending_versions), and int_fact_recompute recomputes those facts.
-#}

{#- A fraud setting (config fraud.*), passed by build_gold as JSON in SALESLAKE_GOLD_FRAUD. -#}
{% macro fraud_setting(name) -%}
    {%- set settings = fromjson(env_var('SALESLAKE_GOLD_FRAUD')) -%}
    {{- return(settings[name]) -}}
{%- endmacro %}

{#- The velocity key of a silver line (NULL when it has no event time, or no card and no
    named customer): the source, then the card, else the customer. -#}
{% macro velocity_key() -%}
    case when order_ts is not null then
        coalesce(
            source_system || ':card:' || card_fingerprint,
            source_system || ':customer:'
                || case when not (source_system = 'pos' and customer_id = 'WALK-IN') then customer_id end
        )
    end
{%- endmacro %}

{#- Engine-specific expressions (dbt dispatch; the defaults are DuckDB's). -#}

{#- A timestamp as epoch microseconds (BIGINT): range frames order by it. -#}
{% macro to_epoch_us(expr) -%}
    {{ return(adapter.dispatch('to_epoch_us', 'saleslake_gold')(expr)) }}
{%- endmacro %}
{% macro default__to_epoch_us(expr) -%}epoch_us({{ expr }}){%- endmacro %}
{% macro spark__to_epoch_us(expr) -%}unix_micros({{ expr }}){%- endmacro %}

{#- A date as a day number (days since 1970-01-01). -#}
{% macro to_day_number(expr) -%}
    {{ return(adapter.dispatch('to_day_number', 'saleslake_gold')(expr)) }}
{%- endmacro %}
{% macro default__to_day_number(expr) -%}date_diff('day', date '1970-01-01', {{ expr }}){%- endmacro %}
{% macro spark__to_day_number(expr) -%}unix_date({{ expr }}){%- endmacro %}

{#- A list of reason codes as text, joined by commas ('' for none). -#}
{% macro reasons_text(expr) -%}
    {{ return(adapter.dispatch('reasons_text', 'saleslake_gold')(expr)) }}
{%- endmacro %}
{% macro default__reasons_text(expr) -%}array_to_string({{ expr }}, ','){%- endmacro %}
{% macro spark__reasons_text(expr) -%}array_join({{ expr }}, ','){%- endmacro %}

{#- A day's date plus a number of days. -#}
{% macro add_days(expr, days) -%}
    {{ return(adapter.dispatch('add_days', 'saleslake_gold')(expr, days)) }}
{%- endmacro %}
{% macro default__add_days(expr, days) -%}cast({{ expr }} + {{ days | int }} as date){%- endmacro %}
{% macro spark__add_days(expr, days) -%}date_add({{ expr }}, {{ days | int }}){%- endmacro %}


{#-
  The flags of judged lines: (line_key, product_id, order_date, order_ts, velocity_key,
  velocity, above_norm). `scoped` false: every judged line of silver (a full build).
  `scoped` true: the lines int_fraud_scope reaches; a line reached by one rule only keeps
  the other rule's flag from `previous` (int_fraud_lines before this build).
-#}
{% macro fraud_flags(scoped, previous=none) -%}
{%- set window_us = (fraud_setting('velocity_window_seconds') | int) * 1000000 -%}
{%- set norm_days = fraud_setting('quantity_norm_days') | int -%}
{%- set multiple = fraud_setting('quantity_norm_multiple') -%}
{%- set bounds = none -%}
{%- if scoped and execute -%}
    {#- literal dates, so silver's files are pruned by their statistics -#}
    {%- set bounds = run_query('select min(first_day), max(last_day) from ' ~ ref('int_fraud_scope')).rows[0] -%}
{%- endif %}
with
{%- if scoped %}
norm_scope as (
    select scope_key as product_id, first_day, last_day from {{ ref('int_fraud_scope') }} where rule = 'norm'
),

velocity_scope as (
    select scope_key as velocity_key, first_us, last_us from {{ ref('int_fraud_scope') }} where rule = 'velocity'
),
{%- endif %}

judged as (
    select line_key, order_id, product_id, order_date, order_ts, quantity,
           {{ to_epoch_us('order_ts') }} as ts_us,
           {{ velocity_key() }} as velocity_key
    from {{ ref('stg_sales_lines') }}
    where order_ts is not null
    {%- if scoped %}
      {%- if bounds is not none and bounds[0] is not none %}
      and order_date between cast('{{ bounds[0] }}' as date) and cast('{{ bounds[1] }}' as date)
      {%- else %}
      and false
      {%- endif %}
    {%- endif %}
),

-- quantity_above_norm: the product's judged lines of the day before each line ...
norm_lines as (
    select
        j.line_key, j.product_id, j.order_date, j.quantity,
        count(*) over same_day_before as day_lines,
        sum(j.quantity) over same_day_before as day_quantity
    from judged as j
    {%- if scoped %}
    join norm_scope as s
        on j.product_id = s.product_id and j.order_date between s.first_day and s.last_day
    {%- endif %}
    window same_day_before as (
        partition by j.product_id, j.order_date order by j.ts_us
        range between unbounded preceding and 1 preceding
    )
),

-- ... and of the quantity_norm_days days before that day (per product and day)
prior_days as (
    select
        product_id, order_date,
        sum(lines) over days_before as lines,
        sum(quantity) over days_before as quantity
    from (
        select d.*, {{ to_day_number('d.order_date') }} as day_number
        from {{ ref('int_product_quantity_days') }} as d
        {%- if scoped %}
        join norm_scope as s
            on d.product_id = s.product_id
            and d.order_date between {{ add_days('s.first_day', -norm_days) }} and s.last_day
        {%- endif %}
    ) as days
    window days_before as (
        partition by product_id order by day_number
        range between {{ norm_days }} preceding and 1 preceding
    )
),

norm as (
    select
        n.line_key,
        coalesce(p.lines, 0) + n.day_lines >= {{ fraud_setting('quantity_norm_min_lines') | int }}
        and cast(n.quantity as decimal(38, 4)) * (coalesce(p.lines, 0) + n.day_lines)
            > cast('{{ multiple }}' as decimal(38, 4))
              * cast(coalesce(p.quantity, 0) + coalesce(n.day_quantity, 0) as decimal(38, 4)) as above_norm
    from norm_lines as n
    left join prior_days as p on p.product_id = n.product_id and p.order_date = n.order_date
),

-- velocity: the lines of a key within the window before the transactions judged
velocity_lines as (
    select j.line_key, j.velocity_key, j.order_id, j.ts_us
    {%- if scoped %}, j.ts_us >= s.first_us as judged_now{% endif %}
    from judged as j
    {%- if scoped %}
    join velocity_scope as s
        on j.velocity_key = s.velocity_key and j.ts_us between s.first_us - {{ window_us }} and s.last_us
    {%- else %}
    where j.velocity_key is not null
    {%- endif %}
),

transactions as (
    select velocity_key, order_id, ts_us,
           count(*) over (
               partition by velocity_key order by ts_us
               range between {{ window_us }} preceding and current row
           ) as recent
    from (select distinct velocity_key, order_id, ts_us from velocity_lines) as t
),

velocity as (
    select l.line_key, t.recent > {{ fraud_setting('velocity_max_transactions') | int }} as velocity
    from velocity_lines as l
    join transactions as t
        on t.velocity_key = l.velocity_key and t.order_id = l.order_id and t.ts_us = l.ts_us
    {%- if scoped %}
    where l.judged_now
    {%- endif %}
)

select
    j.line_key,
    j.product_id,
    j.order_date,
    j.order_ts,
    j.velocity_key,
    {%- if scoped %}
    -- a rule that did not reach the line keeps its flag (none: a line without a key)
    case when j.velocity_key is null then false else coalesce(v.velocity, o.velocity, false) end as velocity,
    coalesce(n.above_norm, o.above_norm, false) as above_norm
    {%- else %}
    coalesce(v.velocity, false) as velocity,
    coalesce(n.above_norm, false) as above_norm
    {%- endif %}
from judged as j
left join velocity as v on v.line_key = j.line_key
left join norm as n on n.line_key = j.line_key
{%- if scoped %}
left join {{ previous }} as o on o.line_key = j.line_key
where v.line_key is not null or n.line_key is not null
{%- endif %}
{%- endmacro %}


{#- (product_id, order_date) of the judged lines pending lines were and are: the only days
    of int_product_quantity_days that can change. -#}
{% macro pending_judged_days() -%}
    select old_judged_product_id as product_id, old_judged_order_date as order_date
    from {{ ref('int_pending_lines') }}
    where old_order_ts is not null
    union
    select product_id, order_date
    from {{ ref('int_pending_silver') }}
    where order_ts is not null
{%- endmacro %}
