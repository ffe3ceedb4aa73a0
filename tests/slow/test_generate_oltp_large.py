"""`saleslake generate oltp` at a million order lines in a real PostgreSQL: every line
loaded and summed. Its speed is a benchmark's business; the time is only printed."""

from __future__ import annotations

import time
from decimal import Decimal

import psycopg

from saleslake import api


def owner(settings) -> psycopg.Connection:
    pg = settings.postgres
    return psycopg.connect(
        host="127.0.0.1", port=pg.port, dbname=pg.database, user=pg.user, password=pg.password("owner"), autocommit=True
    )


def test_a_million_order_lines_load(postgres_settings) -> None:
    started = time.perf_counter()
    summary = api.generate_oltp(orders=410_000, settings=postgres_settings)
    elapsed = time.perf_counter() - started
    assert summary.loaded["order_lines"] >= 1_000_000
    with owner(postgres_settings) as conn:
        total = conn.execute("SELECT sum(quantity * unit_price) FROM order_lines").fetchone()[0]
        assert isinstance(total, Decimal) and total > 0
        assert conn.execute("SELECT count(*) FROM order_lines").fetchone()[0] == summary.loaded["order_lines"]
    print(
        f"\nfilled {summary.loaded['order_lines']:,} order lines ({sum(summary.loaded.values()):,} rows) "
        f"in {elapsed:.1f} s: {summary.loaded['order_lines'] / elapsed:,.0f} lines/s"
    )
