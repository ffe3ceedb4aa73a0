{#-
  SCD Type 2 versions in business time (CONTRACT §5), shared by the customer, product
  and store histories.

  `observations` is a relation with one row per observation of an entity:
    - the natural key column and the attribute columns,
    - obs_date      date       the effective (business) date of the observation,
    - obs_ts        timestamp  the effective instant within that day (NULL: start of
                               the day); compared as epoch microseconds, so the
                               session time zone never changes the result,
    - obs_seq       bigint     landing sequence (later landed wins within the same time),
    - obs_position  varchar    position in the landed object (row number, offset),
    - obs_id        varchar    a unique id of the observation (final tie-break).

  Steps, all set-based:
    1. one attribute set per key per day: the last observation of the day, ordered by
       (obs_ts, obs_seq, obs_position in natural order, obs_id) - a hash aggregate
       (arg_max), so 10M lines never need a full sort;
    2. gaps and islands: consecutive days with equal attribute sets (NULL-safe
       comparison) form one version;
    3. valid_from = first day of the island, valid_to = next version's valid_from
       (exclusive) or the open end 9999-12-31; version = 1..n; is_current on the last.
  Late data (an earlier day with other attributes) simply re-splits the history on the
  next rebuild, because the result is a pure function of the observations.
-#}
{% macro scd2_versions(observations, natural_key, attributes) -%}
with daily as (
    select
        {{ natural_key }},
        obs_date,
        arg_max(
            struct_pack({% for a in attributes %}{{ a }} := {{ a }}{% if not loop.last %}, {% endif %}{% endfor %}),
            struct_pack(
                ts := coalesce(epoch_us(obs_ts), epoch_us(cast(obs_date as timestamp))),
                seq := coalesce(obs_seq, -1),
                pos_len := length(coalesce(obs_position, '')),
                pos := coalesce(obs_position, ''),
                id := coalesce(obs_id, '')
            )
        ) as attrs
    from {{ observations }}
    where {{ natural_key }} is not null and obs_date is not null
    group by {{ natural_key }}, obs_date
),

changes as (
    select
        *,
        case
            when lag(attrs) over (partition by {{ natural_key }} order by obs_date) is distinct from attrs
            then 1 else 0
        end as starts_version
    from daily
),

islands as (
    select
        *,
        sum(starts_version) over (
            partition by {{ natural_key }} order by obs_date rows between unbounded preceding and current row
        ) as island
    from changes
),

versions as (
    select
        {{ natural_key }},
        island,
        min(obs_date) as valid_from,
        arg_min(attrs, obs_date) as attrs
    from islands
    group by {{ natural_key }}, island
)

select
    {{ natural_key }},
    {%- for a in attributes %}
    attrs.{{ a }} as {{ a }},
    {%- endfor %}
    valid_from,
    coalesce(
        lead(valid_from) over (partition by {{ natural_key }} order by valid_from),
        cast('{{ var("scd2_open_end") }}' as date)
    ) as valid_to,
    lead(valid_from) over (partition by {{ natural_key }} order by valid_from) is null as is_current,
    cast(row_number() over (partition by {{ natural_key }} order by valid_from) as integer) as version
from versions
{%- endmacro %}


{#- The unknown member row of an SCD2 dimension: sk -1, NULL natural key, 'Unknown'
    attributes, valid over all time. -#}
{% macro scd2_unknown_member(sk, natural_key, attributes) -%}
select
    cast(-1 as bigint) as {{ sk }},
    cast(null as varchar) as {{ natural_key }},
    {%- for a in attributes %}
    cast('Unknown' as varchar) as {{ a }},
    {%- endfor %}
    cast('{{ var("scd2_unknown_start") }}' as date) as valid_from,
    cast('{{ var("scd2_open_end") }}' as date) as valid_to,
    true as is_current,
    cast(1 as integer) as version
{%- endmacro %}


{#- An SCD2 dimension: versions with their surrogate keys, plus the unknown member. -#}
{% macro scd2_dimension(history, sk, natural_key, attributes) -%}
select
    {{ surrogate_key([natural_key, 'valid_from']) }} as {{ sk }},
    cast({{ natural_key }} as varchar) as {{ natural_key }},
    {%- for a in attributes %}
    cast({{ a }} as varchar) as {{ a }},
    {%- endfor %}
    valid_from,
    valid_to,
    is_current,
    version
from {{ history }}
union all
{{ scd2_unknown_member(sk, natural_key, attributes) }}
{%- endmacro %}
