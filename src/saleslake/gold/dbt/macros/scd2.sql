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

  Semantics:
    1. one attribute set per key per day: the last observation of the day, ordered by
       (obs_ts, obs_seq, obs_position in natural order, obs_id);
    2. consecutive days with equal attribute sets (NULL-safe) form one version
       (gaps and islands);
    3. valid_from = first day of the version, valid_to = next version's valid_from
       (exclusive) or the open end 9999-12-31; version = 1..n; is_current on the last.
  Late data (an earlier day with other attributes) simply re-splits the history on the
  next rebuild, because the result is a pure function of the observations.

  Plan (set-based, fast at 10M observations on 2 cores): attribute sets are compared by
  a 64-bit hash computed inside this query (never stored; equal sets, NULLs included,
  hash equal; a collision between two sets of one key is ~2^-64). Only days where
  observations disagree pay for the ordered pick, only keys whose attributes ever
  changed pay for the window sort, and the attribute values are fetched for the
  (few) version starts at the end.
-#}
{% macro scd2_versions(observations, natural_key, attributes) -%}
with obs as not materialized (
    select
        {{ natural_key }} as nk,
        {%- for a in attributes %}
        {{ a }},
        {%- endfor %}
        obs_date,
        obs_ts,
        obs_seq,
        obs_position,
        obs_id,
        hash({{ attributes | join(', ') }}) as attrs_hash
    from {{ observations }}
    where {{ natural_key }} is not null and obs_date is not null
),

days as (
    select nk, obs_date, min(attrs_hash) as h_min, max(attrs_hash) as h_max
    from obs
    group by nk, obs_date
),

-- days whose observations disagree: the last observation of the day wins
conflicts as (
    select
        o.nk,
        o.obs_date,
        arg_max(
            o.attrs_hash,
            struct_pack(
                ts := coalesce(epoch_us(o.obs_ts), epoch_us(cast(o.obs_date as timestamp))),
                seq := coalesce(o.obs_seq, -1),
                pos_len := length(coalesce(o.obs_position, '')),
                pos := coalesce(o.obs_position, ''),
                id := coalesce(o.obs_id, '')
            )
        ) as attrs_hash
    from obs as o
    semi join (select nk, obs_date from days where h_min <> h_max) as d
        on o.nk = d.nk and o.obs_date = d.obs_date
    group by o.nk, o.obs_date
),

daily as (
    select nk, obs_date, h_min as attrs_hash from days where h_min = h_max
    union all
    select nk, obs_date, attrs_hash from conflicts
),

keys as (
    select nk, min(attrs_hash) as h_min, max(attrs_hash) as h_max, min(obs_date) as first_day
    from daily
    group by nk
),

-- the first day of every version: keys that never changed start once; the others at
-- every day whose attribute set differs from the previous day's
version_starts as (
    select nk, first_day as valid_from, h_min as attrs_hash
    from keys
    where h_min = h_max
    union all
    select nk, obs_date as valid_from, attrs_hash
    from (
        select
            d.nk,
            d.obs_date,
            d.attrs_hash,
            lag(d.attrs_hash) over (partition by d.nk order by d.obs_date) as previous_hash
        from daily as d
        semi join (select nk from keys where h_min <> h_max) as k on d.nk = k.nk
    )
    where previous_hash is distinct from attrs_hash
),

versions as (
    select
        v.nk,
        v.valid_from,
        arg_min(
            struct_pack({% for a in attributes %}{{ a }} := o.{{ a }}{% if not loop.last %}, {% endif %}{% endfor %}),
            o.obs_id
        ) as attrs
    from version_starts as v
    join obs as o
        on o.nk = v.nk and o.obs_date = v.valid_from and o.attrs_hash = v.attrs_hash
    group by v.nk, v.valid_from
)

select
    nk as {{ natural_key }},
    {%- for a in attributes %}
    attrs.{{ a }} as {{ a }},
    {%- endfor %}
    valid_from,
    coalesce(lead(valid_from) over w, cast('{{ var("scd2_open_end") }}' as date)) as valid_to,
    lead(valid_from) over w is null as is_current,
    cast(row_number() over w as integer) as version
from versions
window w as (partition by nk order by valid_from)
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
