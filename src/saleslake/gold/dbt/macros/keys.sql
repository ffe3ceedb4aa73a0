{#-
  Deterministic 63-bit surrogate key: the first 16 hex digits of the md5 of an
  injective encoding of the columns (length-prefixed, NULL as '~'), shifted right by one
  bit so the key is a non-negative BIGINT (never -1, the unknown member). md5 is a
  fixed algorithm, so keys are stable across DuckDB versions and across rebuilds, and
  do not move when unrelated data arrives.
-#}
{% macro surrogate_key(columns) -%}
    cast(
        cast('0x' || substr(md5(
            {%- for col in columns %}
            coalesce(cast(length(cast({{ col }} as varchar)) as varchar) || ':' || cast({{ col }} as varchar), '~')
            {%- if not loop.last %} || '|' || {% endif -%}
            {% endfor %}
        ), 1, 16) as ubigint) >> 1
    as bigint)
{%- endmacro %}

{#- yyyymmdd integer key of a date; -1 for NULL (the unknown date). -#}
{% macro date_key(expr) -%}
    coalesce(cast(year({{ expr }}) * 10000 + month({{ expr }}) * 100 + day({{ expr }}) as integer), -1)
{%- endmacro %}

{#- The six columns that identify a geography, in key order. -#}
{% macro geography_columns() -%}
    city, state, country, postal_code, region, market
{%- endmacro %}

{#- geography_sk of a row: the surrogate key of its six geography columns, -1 when all
    are NULL (the unknown geography). -#}
{% macro geography_sk() -%}
    {%- set cols = ['city', 'state', 'country', 'postal_code', 'region', 'market'] -%}
    case
        when {% for c in cols %}{{ c }} is null{% if not loop.last %} and {% endif %}{% endfor %} then cast(-1 as bigint)
        else {{ surrogate_key(cols) }}
    end
{%- endmacro %}
