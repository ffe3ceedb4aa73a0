"""Freshness per source: how recent the newest data of each source is in silver and in
the published gold, read from committed snapshots (safe while a run or a stream writes).

    from saleslake.serve.freshness import freshness
    freshness(lake)  # [{"source_system": "pos", "silver_lines": 9120, "last_event_at": ..., ...}]
"""

from __future__ import annotations

from datetime import UTC, datetime

from saleslake.lake import Lake
from saleslake.serve.query import reader_connection


def freshness(lake: Lake, now: datetime | None = None) -> list[dict]:
    """One row per source system (``csv:<source>``, ``oltp``, ``pos``).

    ``last_event_at``: newest business time (order_ts, else order_date) in silver;
    ``last_ingested_at``: when its newest line reached the lake; ``silver_age_seconds``:
    now minus that; ``gold_lines`` and ``gold_published_at``: the same source in the
    latest gold release, and when that release was published.
    """
    now = now or datetime.now(UTC)
    con = reader_connection(lake)
    try:
        catalogs = {
            r[0]
            for r in con.execute(
                "SELECT schema_name || '.' || table_name FROM duckdb_tables() "
                "UNION ALL SELECT schema_name || '.' || view_name FROM duckdb_views()"
            ).fetchall()
        }
        if "silver.sales_lines" not in catalogs:
            return []
        gold = "gold.fact_sales" in catalogs
        published = None
        if "system.gold_releases" in catalogs:
            published = con.execute('SELECT max(published_at) FROM memory."system".gold_releases').fetchall()[0][0]
        gold_sql = (
            (
                "LEFT JOIN (SELECT source_system, count(*) AS gold_lines FROM gold.fact_sales GROUP BY ALL) g "
                "USING (source_system)"
            )
            if gold
            else ""
        )
        rows = con.execute(
            f"""
            SELECT s.source_system, s.silver_lines, s.last_event_at, s.last_ingested_at,
                   {"coalesce(g.gold_lines, 0)" if gold else "0"} AS gold_lines
            FROM (SELECT source_system, count(*) AS silver_lines,
                         max(coalesce(order_ts, CAST(order_date AS TIMESTAMPTZ))) AS last_event_at,
                         max(ingested_at) AS last_ingested_at
                  FROM silver.sales_lines GROUP BY ALL) s
            {gold_sql}
            ORDER BY s.source_system
            """
        ).fetchall()
    finally:
        con.close()
    out = []
    for source, lines, event_at, ingested_at, gold_lines in rows:
        out.append(
            {
                "source_system": source,
                "silver_lines": lines,
                "last_event_at": event_at.isoformat() if event_at else None,
                "last_ingested_at": ingested_at.isoformat() if ingested_at else None,
                "silver_age_seconds": round((now - ingested_at).total_seconds(), 1) if ingested_at else None,
                "gold_lines": gold_lines,
                "gold_published_at": published.isoformat() if published else None,
            }
        )
    return out
