"""Operational extract benchmark: PostgreSQL → bronze Parquet → silver, against a plain
``pandas.read_sql`` of the same join, with the source's lock waits measured meanwhile.

    .venv/bin/python benchmarks/extract_postgres.py [--lines 1000000] [--keep]

It starts its own PostgreSQL (``saleslake services start postgres`` code, state under
benchmarks/work/postgres, a free port on 127.0.0.1) sharing the two cores with the
extract, fills a shop with about ``--lines`` order lines (``saleslake generate oltp``,
about 2.5 lines per order; ``--lines 10000000`` accepted), then:

- ``saleslake``: ``api.ingest_postgres`` into a fresh lake (first, full extract of every
  table); ``extract_rows_per_second`` = rows read from the source into bronze Parquet
  per second of the read transaction; ``end_to_end`` includes silver (mapping,
  enrichment, Delta commit) and the reference tables;
- ``baseline``: ``pandas.read_sql`` (frames of 100k rows) of ``order_lines JOIN orders`` (the rows silver needs)
  over a psycopg connection;
- lock waits: while the extract runs, a writer updates random orders in autocommit
  (one row per statement, as the shop does) and records each statement's latency, and a
  sampler polls ``pg_locks``/``pg_stat_activity`` every 20 ms for sessions waiting on a
  lock; ``longest_lock_wait_seconds`` is the longest such wait seen (0 when none).

Results: benchmarks/results/extract-postgres-<lines>.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASELINE_CHUNK = 100_000
sys.path.insert(0, str(HERE.parent / "src"))

import psycopg  # noqa: E402

from saleslake import api  # noqa: E402
from saleslake.devservices.postgres import (  # noqa: E402
    PASSWORD_ENV,
    PostgresService,
    create_database,
    start_postgres,
    stop_postgres,
)

JOIN = (
    "SELECT l.order_line_id, l.order_id, l.line_no, l.product_id, l.quantity, l.unit_price, l.discount, "
    "l.unit_cost, l.shipping_cost, l.updated_at AS line_updated_at, l.deleted_at AS line_deleted_at, "
    "o.customer_id, o.store_id, o.order_ts, o.status, o.ship_mode, o.order_priority, o.ship_date, o.ship_city, "
    "o.ship_state, o.ship_country, o.ship_postal_code, o.ship_region, o.ship_market, o.currency, "
    "o.updated_at, o.deleted_at FROM order_lines l JOIN orders o USING (order_id)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LockWatch:
    """A writer updating orders one row at a time, and a pg_locks sampler."""

    def __init__(self, connect):
        self.connect = connect
        self.stop = threading.Event()
        self.write_latencies: list[float] = []
        self.longest_wait = 0.0
        self.samples = 0
        self.waiting_samples = 0

    def writer(self) -> None:
        with self.connect() as conn:
            top = conn.execute("SELECT max(order_id) FROM orders").fetchone()[0]
            rng = random.Random(1)
            while not self.stop.is_set():
                t = time.perf_counter()
                conn.execute(
                    "UPDATE orders SET order_priority = order_priority WHERE order_id = %s", (rng.randint(1, top),)
                )
                self.write_latencies.append(time.perf_counter() - t)
                time.sleep(0.01)

    def sampler(self) -> None:
        with self.connect() as conn:
            while not self.stop.is_set():
                row = conn.execute(
                    "SELECT coalesce(max(extract(epoch FROM now() - a.state_change)), 0), count(*) "
                    "FROM pg_stat_activity a WHERE a.wait_event_type = 'Lock' AND a.pid <> pg_backend_pid()"
                ).fetchone()
                locks = conn.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()[0]
                self.samples += 1
                if row[1] or locks:
                    self.waiting_samples += 1
                    self.longest_wait = max(self.longest_wait, float(row[0]))
                time.sleep(0.02)

    def __enter__(self):
        self.threads = [
            threading.Thread(target=self.writer, daemon=True),
            threading.Thread(target=self.sampler, daemon=True),
        ]
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join()

    def summary(self) -> dict:
        lat = sorted(self.write_latencies) or [0.0]
        return {
            "longest_lock_wait_seconds": round(self.longest_wait, 4),
            "lock_wait_samples": self.waiting_samples,
            "samples": self.samples,
            "writer_statements": len(self.write_latencies),
            "writer_max_latency_seconds": round(lat[-1], 4),
            "writer_p99_latency_seconds": round(lat[int(len(lat) * 0.99) - 1 if len(lat) > 1 else 0], 4),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument(
        "--keep", action="store_true", help="keep the PostgreSQL service, its shop database and the lake afterwards"
    )
    args = parser.parse_args()
    work = HERE / "work" / "extract-postgres"
    work.mkdir(parents=True, exist_ok=True)
    service = PostgresService(home=work / "postgres", port=_free_port())  # its own cluster
    start_postgres(service)
    for role, name in PASSWORD_ENV.items():
        os.environ[f"{name}_FILE"] = str(service.password_file(role))
    database = f"bench_{args.lines}_{int(time.time())}"
    create_database(service, database, "owner")
    home = work / f"lake-{args.lines}-{int(time.time())}"
    settings = api.settings(home=home)
    settings = settings.model_copy(
        update={"postgres": settings.postgres.model_copy(update={"port": service.port, "database": database})}
    )
    try:
        t = time.perf_counter()
        orders = max(1, int(args.lines / 2.5))
        fill = api.generate_oltp(orders=orders, seed=42, settings=settings)
        fill_seconds = time.perf_counter() - t
        lines = fill.tables["order_lines"]

        def owner():
            return psycopg.connect(
                host="127.0.0.1",
                port=service.port,
                dbname=database,
                user="saleslake",
                password=service.password("owner"),
                autocommit=True,
            )

        with LockWatch(owner) as watch:
            t = time.perf_counter()
            result = api.ingest_postgres(settings=settings)
            end_to_end = time.perf_counter() - t
        locks = watch.summary()

        print(
            f"saleslake: {result.rows:,} rows extracted in {result.extract_seconds:.1f} s, "
            f"end to end {end_to_end:.1f} s",
            file=sys.stderr,
            flush=True,
        )
        import pandas as pd

        with psycopg.connect(
            host="127.0.0.1",
            port=service.port,
            dbname=database,
            user="saleslake_reader",
            password=service.password("reader"),
        ) as conn:
            t = time.perf_counter()
            # in frames of 100k rows: one frame of 10M rows needs more than this machine's 24 GB
            baseline_rows = sum(len(frame) for frame in pd.read_sql(JOIN, conn, chunksize=BASELINE_CHUNK))
            baseline_seconds = time.perf_counter() - t
        ours = {
            "rows": result.rows,
            "extract_seconds": round(result.extract_seconds, 3),
            "extract_rows_per_second": round(result.rows_per_second),
            "order_lines": result.tables["order_lines"],
            "order_lines_per_second": round(result.tables["order_lines"] / result.extract_seconds),
            "end_to_end_seconds": round(end_to_end, 3),
            "end_to_end_lines_per_second": round(result.silver.rows_valid / end_to_end),
            "silver_valid": result.silver.rows_valid,
        }
        baseline = {
            "rows": baseline_rows,
            "seconds": round(baseline_seconds, 3),
            "rows_per_second": round(baseline_rows / baseline_seconds),
        }
        out = {
            "lines": lines,
            "orders": orders,
            "fill_seconds": round(fill_seconds, 1),
            "saleslake": ours,
            "baseline_pandas_read_sql": baseline,
            "locks": locks,
            "speedup_vs_baseline_order_lines": round(ours["order_lines_per_second"] / baseline["rows_per_second"], 2),
            "cpus": os.cpu_count(),
        }
        results = HERE / "results" / f"extract-postgres-{args.lines}.json"
        results.parent.mkdir(exist_ok=True)
        results.write_text(json.dumps(out, indent=2) + "\n")
        print(
            "| lines | extract rows/s | order lines/s | end to end lines/s | pandas.read_sql rows/s | speedup | "
            "longest lock wait | writer max latency |"
        )
        print("|---|---|---|---|---|---|---|---|")
        print(
            f"| {lines:,} | {ours['extract_rows_per_second']:,} | {ours['order_lines_per_second']:,} | "
            f"{ours['end_to_end_lines_per_second']:,} | {baseline['rows_per_second']:,} | "
            f"{out['speedup_vs_baseline_order_lines']}x | {locks['longest_lock_wait_seconds']} s | "
            f"{locks['writer_max_latency_seconds']} s |"
        )
        print(f"results: {results}")
    finally:
        if not args.keep:
            with psycopg.connect(
                host="127.0.0.1",
                port=service.port,
                dbname="postgres",
                user="saleslake",
                password=service.password("owner"),
                autocommit=True,
            ) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}"')
            stop_postgres(service)
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
