{#-
  Incremental gold (see saleslake.gold.build). build_gold decides per build:

  - a full build (`dbt build --full-refresh`): every model is rebuilt from silver;
  - an incremental build: only what the pending lines can have changed is recomputed.

  Pending lines (int_pending_lines) are the silver lines that are new, changed or gone
  since the previous build, with what their fact was; they accumulate until the build
  that handled them is published (build_gold clears them after the release is
  recorded), so a build that dies half way is completed by the next one. From them:

  - int_<dim>_days recompute the SCD2 days (key, date) of those lines, old and new;
    int_<dim>_versions derive every version from the days (cheap), and
    int_<dim>_changes compare them with the dimension before this build;
  - the dimensions replace the changed keys and record the validity intervals whose
    version (surrogate key or attributes) changed in gold_state.pending_versions, in
    the same transaction (kept, like the pending lines, until published);
  - int_fraud_scope / int_fraud_evaluated / int_fraud_lines re-decide the history fraud
    rules where the pending lines changed their evidence, and record the judged lines
    whose flags changed in gold_state.pending_fraud, in int_fraud_lines' transaction (kept
    until published; see macros/fraud.sql);
  - int_fact_recompute: the pending lines still in silver, the lines in a changed
    interval and the lines whose fraud flags changed; fact_sales recomputes those and
    deletes the pending lines gone;
  - agg_sales_daily recomputes the days of those facts, old and new.

  Every step of an incremental build is a pure function of silver and the pending
  state, so running it again (after a crash) gives the same result.
-#}

{#- True on a full build (build_gold passes --full-refresh), false on an incremental one. -#}
{% macro gold_full_build() -%}
    {{ return(flags.FULL_REFRESH) }}
{%- endmacro %}

{#- Guard of incremental models: build_gold runs incremental builds only when every
    incremental table exists, so a missing one means the warehouse is incomplete. -#}
{% macro assert_incremental_state() -%}
    {%- if execute and not gold_full_build() and not is_incremental() -%}
        {{ exceptions.raise_compiler_error(
            this ~ " does not exist for an incremental gold build; run `saleslake rebuild gold`") }}
    {%- endif -%}
{%- endmacro %}

{#- The current content of a gold table, read before it is rebuilt in this build (not a
    ref: that would make the table depend on itself). Order with `-- depends_on:`. -#}
{% macro current_gold(name) -%}
    {{ return(api.Relation.create(database=target.database, schema='gold', identifier=name)) }}
{%- endmacro %}

{#- The current content of an intermediate table, read by a model that runs before it in
    this build (not a ref: that would be a cycle). -#}
{% macro current_intermediate(name) -%}
    {{ return(api.Relation.create(database=target.database, schema='intermediate', identifier=name)) }}
{%- endmacro %}

{#- The pending-state tables build_gold maintains (created before dbt runs). -#}
{% macro pending_versions() -%}
    {{ return(api.Relation.create(database=target.database, schema='gold_state', identifier='pending_versions')) }}
{%- endmacro %}

{#- Judged lines whose history fraud flags an unpublished build changed (macros/fraud.sql). -#}
{% macro pending_fraud() -%}
    {{ return(api.Relation.create(database=target.database, schema='gold_state', identifier='pending_fraud')) }}
{%- endmacro %}

{#- silver_files: the silver Parquet files (paths relative to the table) whose lines
    int_pending_lines has compared; silver_files_now: those of this build's snapshot. -#}
{% macro silver_files(name) -%}
    {{ return(api.Relation.create(database=target.database, schema='gold_state', identifier=name)) }}
{%- endmacro %}

{#- (natural_key, obs_date) pairs whose SCD2 day (see scd2_days) may have changed: the
    key and order date a pending line had in the fact, and those it has in silver now. -#}
{% macro pending_days(natural_key) -%}
    select old_{{ natural_key }} as natural_key,
           make_date(old_order_date_key // 10000, old_order_date_key // 100 % 100, old_order_date_key % 100) as obs_date
    from {{ ref('int_pending_lines') }}
    where old_{{ natural_key }} is not null and old_order_date_key > 0
    union
    select {{ natural_key }}, order_date
    from {{ ref('int_pending_silver') }}
    where {{ natural_key }} is not null and order_date is not null
{%- endmacro %}

{#- The natural keys with pending days: the only keys whose SCD2 versions can change. -#}
{% macro pending_keys(natural_key) -%}
    select distinct natural_key from ({{ pending_days(natural_key) }})
{%- endmacro %}

{#- Order month of a date as 'YYYY-MM' (the Delta partition of fact_sales). -#}
{% macro order_month(expr) -%}
    coalesce(strftime({{ expr }}, '%Y-%m'), 'unknown')
{%- endmacro %}

{#- Days agg_sales_daily recomputes on an incremental build: the order days of the
    recomputed facts and the days pending lines had in the fact. -#}
{% macro agg_affected_days() -%}
    select order_date_key from {{ ref('int_fact_recompute') }}
    union
    select old_order_date_key from {{ ref('int_pending_lines') }} where old_order_date_key is not null
{%- endmacro %}

{#- Data tests' `where` config: the placeholder __recomputed_facts__ limits a fact test to
    the facts this build recomputed on an incremental build (delete+insert replaces whole
    lines, so only those can break uniqueness) and to every fact on a full build. -#}
{% macro default__get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where == '__recomputed_facts__' -%}
        {%- if gold_full_build() -%}
            {%- do return(relation) -%}
        {%- endif -%}
        {%- set recomputed = api.Relation.create(database=target.database, schema='intermediate',
                                                 identifier='int_fact_recompute') -%}
        {%- set where = 'line_key in (select line_key from ' ~ recomputed ~ ')' -%}
    {%- endif -%}
    {%- if where -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ where ~ ') dbt_subquery') -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}
