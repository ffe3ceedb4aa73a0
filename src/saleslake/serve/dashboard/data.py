"""Every number the dashboard shows, computed in DuckDB over committed snapshots.

The functions take a reader connection (:func:`open_reader`) and :class:`Filters` and
return small results: a dict of exact KPI values or an Arrow table of at most a few
thousand aggregated rows. Fact rows never leave DuckDB. Gold is read at the latest
release's table versions (``saleslake.serve.query.reader_connection``), so a run or a
stream writing meanwhile never changes or breaks what a page shows.

KPI definitions (also in docs/dashboard.md):

- revenue: net sales, ``sum(fact_sales.net_sales)`` = gross sales minus discounts, the
  amount customers were charged before tax (tax is computed on it, CONTRACT §7);
- orders: distinct ``(source_system, order_id)``, as ``agg_sales_daily`` counts them;
- average order value: revenue / orders;
- margin: ``sum(profit) / sum(net_sales)``, weighted by revenue (as each line's
  ``profit_margin`` is profit over its net sales);
- tax collected: ``sum(tax_amount)``;
- suspected-fraud rate: lines flagged ``is_suspected_fraud`` / all lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import duckdb
import pyarrow as pa

from saleslake.gold.release import releases
from saleslake.lake import Lake, open_delta
from saleslake.serve.query import reader_connection

UNKNOWN = "(unknown)"
NO_STORE = "(no store: exports and online)"

# Breakdown dimensions: the label expression over the filtered lines ``l`` and the join
# it needs. Region, country and category are already on ``l`` (the filters use them).
DIMENSIONS: dict[str, tuple[str, str]] = {
    "region": ("l.region", ""),
    "country": ("l.country", ""),
    "category": ("l.category", ""),
    "segment": (
        f"coalesce(c.segment, '{UNKNOWN}')",
        "LEFT JOIN gold.dim_customer AS c ON c.customer_sk = l.customer_sk",
    ),
    "store": (
        f"CASE WHEN l.store_sk = -1 THEN '{NO_STORE}' ELSE coalesce(s.store_name, s.store_id, '{UNKNOWN}') END",
        "LEFT JOIN gold.dim_store AS s ON s.store_sk = l.store_sk",
    ),
}


@dataclass(frozen=True)
class Filters:
    """Sidebar filters; hashable so Streamlit can cache on them. Empty tuples: all."""

    start: date | None = None
    end: date | None = None
    regions: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    def where(self) -> tuple[str, list]:
        """A SQL condition over ``f`` (fact), ``g`` (geography), ``p`` (product) and its
        parameters. Dates compare as yyyymmdd keys, so DuckDB can skip Parquet row
        groups by their statistics."""
        clauses: list[str] = ["true"]
        params: list[object] = []
        if self.start is not None:
            clauses.append("f.order_date_key >= ?")
            params.append(date_key(self.start))
        if self.end is not None:
            clauses.append("f.order_date_key <= ?")
            params.append(date_key(self.end))
        if self.regions:
            clauses.append(f"list_contains(?::VARCHAR[], coalesce(g.region, '{UNKNOWN}'))")
            params.append(list(self.regions))
        if self.categories:
            clauses.append(f"list_contains(?::VARCHAR[], coalesce(p.category, '{UNKNOWN}'))")
            params.append(list(self.categories))
        return " AND ".join(clauses), params


def date_key(day: date) -> int:
    return day.year * 10_000 + day.month * 100 + day.day


def lines_cte(filters: Filters) -> tuple[str, list]:
    """``WITH l AS (...)``: the filtered fact lines with region, country and category."""
    where, params = filters.where()
    sql = f"""
        WITH l AS (
            SELECT f.*,
                   coalesce(g.region, '{UNKNOWN}')   AS region,
                   coalesce(g.country, '{UNKNOWN}')  AS country,
                   coalesce(p.category, '{UNKNOWN}') AS category
            FROM gold.fact_sales AS f
            LEFT JOIN gold.dim_geography AS g ON g.geography_sk = f.geography_sk
            LEFT JOIN gold.dim_product AS p ON p.product_sk = f.product_sk
            WHERE {where}
        )"""
    return sql, params


# -- snapshots --------------------------------------------------------------------------------


def snapshot_token(lake: Lake) -> str | None:
    """Changes whenever what the dashboard reads changes: the latest gold release and the
    quarantine table's version. None before the first gold release."""
    published = releases(lake)
    if not published:
        return None
    quarantine = open_delta(lake.quarantine)
    return f"{published[-1]['release_id']}:{-1 if quarantine is None else quarantine.version()}"


def release_info(lake: Lake) -> dict | None:
    """The latest gold release: ``release_id``, ``run_id``, ``published_at``."""
    published = releases(lake)
    if not published:
        return None
    last = published[-1]
    return {"release_id": last["release_id"], "run_id": last["run_id"], "published_at": last["published_at"]}


def open_reader(lake: Lake) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with views over the committed snapshots (gold at its latest
    release). Use one ``cursor()`` per thread."""
    return reader_connection(lake)


def has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    schema, table = name.split(".", 1)
    return bool(
        con.execute(
            "SELECT count(*) FROM duckdb_views() WHERE schema_name = ? AND view_name = ?", [schema, table]
        ).fetchall()[0][0]
    )


def _arrow(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> pa.Table:
    return con.sql(sql, params=params or None).to_arrow_table()


# -- sales ------------------------------------------------------------------------------------


def filter_options(con: duckdb.DuckDBPyConnection) -> dict:
    """Date bounds of the facts and the regions and categories to choose from."""
    first, last = con.execute(
        "SELECT min(order_date_key), max(order_date_key) FROM gold.fact_sales WHERE order_date_key > 0"
    ).fetchall()[0]
    regions = [
        r[0]
        for r in con.execute(
            f"SELECT DISTINCT coalesce(region, '{UNKNOWN}') FROM gold.dim_geography ORDER BY 1"
        ).fetchall()
    ]
    categories = [
        r[0]
        for r in con.execute(
            f"SELECT DISTINCT coalesce(category, '{UNKNOWN}') FROM gold.dim_product ORDER BY 1"
        ).fetchall()
    ]
    return {"first_date": _from_key(first), "last_date": _from_key(last), "regions": regions, "categories": categories}


def _from_key(key: int | None) -> date | None:
    return None if key is None else date(key // 10_000, key // 100 % 100, key % 100)


def currencies(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Currencies of the lines (gold does not carry one; silver does). More than one
    means the money sums add up different currencies."""
    if not has_table(con, "silver.sales_lines"):
        return []
    return [
        r[0]
        for r in con.execute(
            "SELECT DISTINCT currency FROM silver.sales_lines WHERE currency IS NOT NULL ORDER BY 1"
        ).fetchall()
    ]


def kpis(con: duckdb.DuckDBPyConnection, filters: Filters) -> dict:
    """The headline numbers, exact (Decimal money, int counts); ratios are Decimal or
    None when their denominator is zero."""
    cte, params = lines_cte(filters)
    row = con.execute(
        f"""{cte}
        SELECT coalesce(sum(net_sales), 0), coalesce(sum(sales), 0), coalesce(sum(discount_amount), 0),
               count(DISTINCT (source_system, order_id)), count(*), coalesce(sum(profit), 0),
               coalesce(sum(tax_amount), 0), count(*) FILTER (WHERE is_suspected_fraud),
               count(*) FILTER (WHERE is_outlier), avg(dq_score)
        FROM l""",
        params,
    ).fetchall()[0]
    revenue, gross, discounts, orders, lines, profit, tax, fraud, outliers, dq = row
    return {
        "revenue": Decimal(revenue),
        "gross_sales": Decimal(gross),
        "discounts": Decimal(discounts),
        "orders": orders,
        "lines": lines,
        "profit": Decimal(profit),
        "tax": Decimal(tax),
        "fraud_lines": fraud,
        "outlier_lines": outliers,
        "avg_dq_score": dq,
        "aov": Decimal(revenue) / orders if orders else None,
        "margin": Decimal(profit) / Decimal(revenue) if revenue else None,
        "fraud_rate": Decimal(fraud) / lines if lines else None,
    }


def trend(con: duckdb.DuckDBPyConnection, filters: Filters, grain: str = "day") -> pa.Table:
    """Per day or month: revenue, orders, lines, profit, margin, average order value, tax
    and suspected-fraud rate.
    Grouped on the integer date key first, turned into a date after (cheap)."""
    if grain not in ("day", "month"):
        raise ValueError(f"grain must be day or month, not {grain!r}")
    bucket = "order_date_key" if grain == "day" else "order_date_key // 100 * 100 + 1"
    cte, params = lines_cte(filters)
    return _arrow(
        con,
        f"""{cte},
        t AS (
            SELECT {bucket} AS k, sum(net_sales) AS revenue, count(DISTINCT (source_system, order_id)) AS orders,
                   count(*) AS lines, sum(profit) AS profit, sum(tax_amount) AS tax,
                   count(*) FILTER (WHERE is_suspected_fraud) AS fraud_lines
            FROM l WHERE order_date_key > 0 GROUP BY 1
        )
        SELECT make_date(k // 10000, k // 100 % 100, k % 100) AS {grain},
               CAST(revenue AS DOUBLE) AS revenue, orders, lines, CAST(profit AS DOUBLE) AS profit,
               CAST(profit AS DOUBLE) / nullif(CAST(revenue AS DOUBLE), 0) AS margin,
               CAST(revenue AS DOUBLE) / nullif(orders, 0) AS avg_order_value,
               CAST(tax AS DOUBLE) AS tax, fraud_lines / lines AS fraud_rate
        FROM t ORDER BY 1""",
        params,
    )


def breakdown(con: duckdb.DuckDBPyConnection, filters: Filters, dimension: str) -> pa.Table:
    """Revenue, orders, lines, margin and revenue share per member of ``dimension`` (one of
    :data:`DIMENSIONS`), largest revenue first."""
    label, join = DIMENSIONS[dimension]
    cte, params = lines_cte(filters)
    return _arrow(
        con,
        f"""{cte},
        b AS (
            SELECT {label} AS {dimension}, sum(net_sales) AS revenue,
                   count(DISTINCT (l.source_system, l.order_id)) AS orders, count(*) AS lines, sum(profit) AS profit
            FROM l {join} GROUP BY 1
        )
        SELECT {dimension}, CAST(revenue AS DOUBLE) AS revenue, orders, lines,
               CAST(profit AS DOUBLE) / nullif(CAST(revenue AS DOUBLE), 0) AS margin,
               CAST(revenue AS DOUBLE) / nullif(sum(CAST(revenue AS DOUBLE)) OVER (), 0) AS share
        FROM b ORDER BY revenue DESC, {dimension}""",
        params,
    )


def top_products(con: duckdb.DuckDBPyConnection, filters: Filters, n: int = 10) -> pa.Table:
    """The ``n`` products with the most revenue (by product id across SCD2 versions,
    named by their latest version)."""
    cte, params = lines_cte(filters)
    return _arrow(
        con,
        f"""{cte}
        SELECT coalesce(p.product_id, '{UNKNOWN}') AS product_id,
               max_by(p.product_name, p.valid_from) AS product_name, max_by(p.category, p.valid_from) AS category,
               CAST(sum(l.net_sales) AS DOUBLE) AS revenue, CAST(sum(l.quantity) AS BIGINT) AS quantity,
               count(DISTINCT (l.source_system, l.order_id)) AS orders,
               CAST(sum(l.profit) AS DOUBLE) / nullif(CAST(sum(l.net_sales) AS DOUBLE), 0) AS margin
        FROM l LEFT JOIN gold.dim_product AS p ON p.product_sk = l.product_sk
        GROUP BY 1 ORDER BY revenue DESC, product_id LIMIT {int(n)}""",
        params,
    )


def top_customers(con: duckdb.DuckDBPyConnection, filters: Filters, n: int = 10) -> pa.Table:
    """The ``n`` customers with the most revenue (walk-in POS sales count as one customer)."""
    cte, params = lines_cte(filters)
    return _arrow(
        con,
        f"""{cte}
        SELECT coalesce(c.customer_id, '{UNKNOWN}') AS customer_id,
               max_by(c.customer_name, c.valid_from) AS customer_name, max_by(c.segment, c.valid_from) AS segment,
               CAST(sum(l.net_sales) AS DOUBLE) AS revenue, count(DISTINCT (l.source_system, l.order_id)) AS orders,
               CAST(sum(l.net_sales) AS DOUBLE) / count(DISTINCT (l.source_system, l.order_id)) AS avg_order_value
        FROM l LEFT JOIN gold.dim_customer AS c ON c.customer_sk = l.customer_sk
        GROUP BY 1 ORDER BY revenue DESC, customer_id LIMIT {int(n)}""",
        params,
    )


# -- data quality ---------------------------------------------------------------------------


def dq_scores(con: duckdb.DuckDBPyConnection, filters: Filters) -> pa.Table:
    """Lines per data-quality score (0-100) among the filtered lines."""
    cte, params = lines_cte(filters)
    return _arrow(con, f"{cte} SELECT dq_score, count(*) AS lines FROM l GROUP BY 1 ORDER BY 1", params)


def quarantine_summary(con: duckdb.DuckDBPyConnection) -> dict:
    """Quarantined rows against valid lines, over the whole lake (quarantined rows have
    no trustworthy date, region or category, so the sidebar filters do not apply)."""
    valid = con.execute("SELECT count(*) FROM gold.fact_sales").fetchall()[0][0]
    quarantined = 0
    if has_table(con, "silver.quarantine"):
        quarantined = con.execute("SELECT count(*) FROM silver.quarantine").fetchall()[0][0]
    total = valid + quarantined
    return {"valid_lines": valid, "quarantined_rows": quarantined, "share": quarantined / total if total else None}


def quarantine_by_reason_over_time(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Per landing day (UTC) and reason code (without its field: ``missing_required``,
    ``invalid_date``, ...): how many quarantined rows carry it. A row with two reasons
    counts under both."""
    if not has_table(con, "silver.quarantine"):
        return pa.table(
            {"day": pa.array([], pa.date32()), "reason": pa.array([], pa.string()), "rows": pa.array([], pa.int64())}
        )
    return _arrow(
        con,
        """
        SELECT CAST(timezone('UTC', ingested_at) AS DATE) AS day, split_part(reason, ':', 1) AS reason,
               count(*) AS rows
        FROM (SELECT ingested_at, unnest(reasons) AS reason FROM silver.quarantine)
        GROUP BY ALL ORDER BY day, reason""",
    )


def quarantine_reasons(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Every full reason code (``missing_required:order_id``) with its row count."""
    if not has_table(con, "silver.quarantine"):
        return pa.table(
            {
                "reason": pa.array([], pa.string()),
                "rows": pa.array([], pa.int64()),
                "share_of_quarantined": pa.array([], pa.float64()),
            }
        )
    return _arrow(
        con,
        """
        SELECT reason, count(*) AS rows,
               count(*) / (SELECT nullif(count(*), 0) FROM silver.quarantine) AS share_of_quarantined
        FROM (SELECT unnest(reasons) AS reason FROM silver.quarantine)
        GROUP BY 1 ORDER BY rows DESC, reason""",
    )
