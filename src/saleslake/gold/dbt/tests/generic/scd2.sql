{#-
  SCD2 integrity tests for a dimension with (natural key, valid_from, valid_to,
  is_current, version). Each returns the offending rows. The unknown member (NULL
  natural key, one version over all time) passes all of them.
-#}

{#- No two versions of a key overlap: each version ends at or before the next begins. -#}
{% test scd2_no_overlap(model, natural_key, valid_from='valid_from', valid_to='valid_to') %}
with ordered as (
    select {{ natural_key }}, {{ valid_from }} as vf, {{ valid_to }} as vt,
           lead({{ valid_from }}) over (partition by {{ natural_key }} order by {{ valid_from }}) as next_vf,
           count(*) over (partition by {{ natural_key }}, {{ valid_from }}) as same_start
    from {{ model }}
)
select * from ordered where vt > next_vf or same_start > 1
{% endtest %}

{#- No gaps: each version ends exactly where the next begins. -#}
{% test scd2_no_gaps(model, natural_key, valid_from='valid_from', valid_to='valid_to') %}
with ordered as (
    select {{ natural_key }}, {{ valid_from }} as vf, {{ valid_to }} as vt,
           lead({{ valid_from }}) over (partition by {{ natural_key }} order by {{ valid_from }}) as next_vf
    from {{ model }}
)
select * from ordered where next_vf is not null and vt <> next_vf
{% endtest %}

{#- Exactly one current version per key; it is the last one and ends at the open end;
    versions are numbered 1..n in validity order. -#}
{% test scd2_one_current(model, natural_key, valid_from='valid_from', valid_to='valid_to',
                         is_current='is_current', version='version') %}
with numbered as (
    select {{ natural_key }}, {{ valid_from }} as vf, {{ valid_to }} as vt,
           {{ is_current }} as cur, {{ version }} as ver,
           row_number() over (partition by {{ natural_key }} order by {{ valid_from }}) as expected_version,
           count(*) over (partition by {{ natural_key }}) as versions,
           count(*) filter (where {{ is_current }}) over (partition by {{ natural_key }}) as currents
    from {{ model }}
)
select * from numbered
where currents <> 1
   or ver <> expected_version
   or cur <> (expected_version = versions)
   or (cur and vt <> cast('{{ var("scd2_open_end") }}' as date))
{% endtest %}

{#- Every version has a non-empty validity interval. -#}
{% test scd2_valid_range(model, valid_from='valid_from', valid_to='valid_to') %}
select * from {{ model }}
where {{ valid_from }} is null or {{ valid_to }} is null or {{ valid_from }} >= {{ valid_to }}
{% endtest %}
