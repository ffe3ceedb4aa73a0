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
  next build, because the result is a pure function of the observations.

  Two steps, so that a build only recomputes what changed:
    - scd2_days: the attribute set of each (key, day) (step 1). It depends only on that
      day's observations of that key, so an incremental build recomputes only the
      (key, day) pairs of pending lines (int_<dim>_days, an incremental table);
    - scd2_versions: the versions of every key from its days (steps 2 and 3), cheap.

  Plan (set-based, fast at 10M observations on 2 cores): attribute sets are compared by
  a 64-bit hash (equal sets, NULLs included, hash equal; a collision between two sets
  of one key is ~2^-64; stored in the days table, which is why a DuckDB upgrade forces a
  full build, see saleslake.gold.state). Only days where observations disagree pay for
  the ordered pick, and only keys whose attributes ever changed pay for the window sort.
-#}

{#- The attribute set of each (key, day): natural key, obs_date, attrs_hash and the
    attribute columns (of any of the day's winning observations: they all have the same
    attribute set). `only_days` (a query returning (natural_key, obs_date)) limits the
    days. -#}
{% macro scd2_days(observations, natural_key, attributes, only_days=none) -%}
{#- a few days: filter the observations once; all days: scan them where used, so the
    conflict scans are pruned by the join filters -#}
with obs as {{ 'materialized' if only_days is not none else 'not materialized' }} (
    select
        o.{{ natural_key }} as nk,
        struct_pack({% for a in attributes %}o.{{ a }}{% if not loop.last %}, {% endif %}{% endfor %}) as attrs,
        o.obs_date,
        o.obs_ts,
        o.obs_seq,
        o.obs_position,
        o.obs_id,
        hash({% for a in attributes %}o.{{ a }}{% if not loop.last %}, {% endif %}{% endfor %}) as attrs_hash
    from {{ observations }} as o
    {%- if only_days is not none %}
    semi join ({{ only_days }}) as d on o.{{ natural_key }} = d.natural_key and o.obs_date = d.obs_date
    {%- endif %}
    where o.{{ natural_key }} is not null and o.obs_date is not null
),

days as (
    select
        nk,
        obs_date,
        min(attrs_hash) as h_min,
        max(attrs_hash) as h_max,
        any_value(attrs) as first_attrs
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

conflict_attrs as (
    select c.nk, c.obs_date, c.attrs_hash, any_value(o.attrs) as attrs
    from conflicts as c
    join obs as o
        on o.nk = c.nk and o.obs_date = c.obs_date and o.attrs_hash = c.attrs_hash
    group by c.nk, c.obs_date, c.attrs_hash
),

daily as (
    select nk, obs_date, h_min as attrs_hash, first_attrs as attrs from days where h_min = h_max
    union all
    select nk, obs_date, attrs_hash, attrs from conflict_attrs
)

select
    nk as {{ natural_key }},
    obs_date,
    attrs_hash,
    {%- for a in attributes %}
    attrs.{{ a }} as {{ a }}{% if not loop.last %},{% endif %}
    {%- endfor %}
from daily
{%- endmacro %}


{#- The versions of every key of a days relation (see scd2_days): natural key,
    attributes, valid_from, valid_to, is_current, version. -#}
{% macro scd2_versions(days, natural_key, attributes) -%}
with keys as (
    select {{ natural_key }} as nk, min(attrs_hash) as h_min, max(attrs_hash) as h_max, min(obs_date) as first_day
    from {{ days }}
    group by {{ natural_key }}
),

-- the first day of every version: keys that never changed start once; the others at
-- every day whose attribute set differs from the previous day's
version_starts as (
    select nk, first_day as valid_from
    from keys
    where h_min = h_max
    union all
    select nk, obs_date as valid_from
    from (
        select
            d.{{ natural_key }} as nk,
            d.obs_date,
            d.attrs_hash,
            lag(d.attrs_hash) over (partition by d.{{ natural_key }} order by d.obs_date) as previous_hash
        from {{ days }} as d
        semi join (select nk from keys where h_min <> h_max) as k on d.{{ natural_key }} = k.nk
    )
    where previous_hash is distinct from attrs_hash
),

versions as (
    select
        v.nk,
        {%- for a in attributes %}
        d.{{ a }},
        {%- endfor %}
        v.valid_from
    from version_starts as v
    join {{ days }} as d on d.{{ natural_key }} = v.nk and d.obs_date = v.valid_from
)

select
    nk as {{ natural_key }},
    {%- for a in attributes %}
    {{ a }},
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


{#- The versions of an SCD2 dimension with their surrogate keys (no unknown member): of
    every key, or of the keys `only_keys` (a query) returns. -#}
{% macro scd2_dimension_versions(days, sk, natural_key, attributes, only_keys=none) -%}
{%- if only_keys is not none -%}
    {%- set days -%}
    (select * from {{ days }} where {{ natural_key }} in ({{ only_keys }}))
    {%- endset -%}
{%- endif -%}
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
from (
{{ scd2_versions(days, natural_key, attributes) }}
) as history
{%- endmacro %}


{#-
  The validity intervals on which a key's version changed between the current dimension
  (`old`, read before it is rebuilt) and this build's versions (`new`, of every key or of
  the keys `only_keys` returns, the others being unchanged): intervals where a
  date maps to another surrogate key or to other attributes. A fact whose key and order
  date fall in one of them may point at another version now (or its version's
  attributes changed), so it is recomputed; facts outside them keep their version.
  Returns (natural key, valid_from, valid_to); a key with no interval kept its versions
  exactly (also valid_to, is_current and version: they follow from the starts).

  Each key's timeline is cut at every valid_from of either side; on each segment the
  covering old and new versions are compared (none = uncovered).
-#}
{% macro scd2_changes(old, new, sk, natural_key, attributes, only_keys=none) -%}
with old_versions as (
    select {{ natural_key }} as nk, {{ sk }} as sk, valid_from, valid_to,
           struct_pack({% for a in attributes %}{{ a }}{% if not loop.last %}, {% endif %}{% endfor %}) as attrs
    from {{ old }}
    where {{ natural_key }} is not null
    {%- if only_keys is not none %}
      and {{ natural_key }} in ({{ only_keys }})
    {%- endif %}
),

new_versions as (
    select {{ natural_key }} as nk, {{ sk }} as sk, valid_from, valid_to,
           struct_pack({% for a in attributes %}{{ a }}{% if not loop.last %}, {% endif %}{% endfor %}) as attrs
    from {{ new }}
),

-- keys whose version rows differ at all (most keys do not: skip them early)
changed_keys as (
    select nk from (
        select nk, sk, valid_from, valid_to, attrs from old_versions
        except
        select nk, sk, valid_from, valid_to, attrs from new_versions
    )
    union
    select nk from (
        select nk, sk, valid_from, valid_to, attrs from new_versions
        except
        select nk, sk, valid_from, valid_to, attrs from old_versions
    )
),

old_changed as (select * from old_versions where nk in (select nk from changed_keys)),

new_changed as (select * from new_versions where nk in (select nk from changed_keys)),

bounds as (
    select nk, valid_from as seg_from from old_changed
    union
    select nk, valid_from from new_changed
),

segments as (
    select
        nk,
        seg_from,
        coalesce(lead(seg_from) over (partition by nk order by seg_from),
                 cast('{{ var("scd2_open_end") }}' as date)) as seg_to
    from bounds
),

compared as (
    select s.nk, s.seg_from, s.seg_to, o.sk as old_sk, o.attrs as old_attrs, n.sk as new_sk, n.attrs as new_attrs
    from segments as s
    left join old_changed as o
        on o.nk = s.nk and s.seg_from >= o.valid_from and s.seg_from < o.valid_to
    left join new_changed as n
        on n.nk = s.nk and s.seg_from >= n.valid_from and s.seg_from < n.valid_to
)

select nk as {{ natural_key }}, seg_from as valid_from, seg_to as valid_to
from compared
where old_sk is distinct from new_sk or old_attrs is distinct from new_attrs
{%- endmacro %}


{#-
  An SCD2 dimension, incremental: a full build writes every version plus the unknown
  member; an incremental build replaces the versions of the keys in `changes` (pre-hooks
  scd2_record_changes and scd2_delete_changed) and leaves every other key untouched.
-#}
{% macro scd2_dimension(versions, changes, sk, natural_key, attributes) -%}
{{ assert_incremental_state() }}
{%- if is_incremental() %}
select * from {{ versions }}
where {{ natural_key }} in (select {{ natural_key }} from {{ changes }})
{%- else %}
select * from {{ versions }}
union all
{{ scd2_unknown_member(sk, natural_key, attributes) }}
{%- endif %}
{%- endmacro %}


{#- Pre-hook of an incremental SCD2 dimension: remember the changed intervals for the
    facts (in the transaction that changes the dimension, see macros/incremental.sql). -#}
{% macro scd2_record_changes(dimension, changes, natural_key) -%}
{%- if is_incremental() -%}
insert into {{ pending_versions() }} (dimension, natural_key, valid_from, valid_to)
select '{{ dimension }}', {{ natural_key }}, valid_from, valid_to from {{ changes }}
{%- endif -%}
{%- endmacro %}


{#- Pre-hook of an incremental SCD2 dimension: drop the versions of the changed keys
    (their new versions, if any, are inserted by the model). -#}
{% macro scd2_delete_changed(changes, natural_key) -%}
{%- if is_incremental() -%}
delete from {{ this }} where {{ natural_key }} in (select {{ natural_key }} from {{ changes }})
{%- endif -%}
{%- endmacro %}
