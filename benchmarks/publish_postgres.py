"""Publish rows per second into a PostgreSQL warehouse, against a pandas + to_sql baseline.

    .venv/bin/python benchmarks/publish_postgres.py                 # 1M order lines
    .venv/bin/python benchmarks/publish_postgres.py --rows 10000000

Builds (once, cached under ``benchmarks/work/publish-<rows>``) a lake with ``rows`` generated
order lines through gold, starts a private PostgreSQL cluster (like ``saleslake services
start postgres``, on a free port) and measures, each into a fresh warehouse database:

- ``publish`` — ``saleslake.api.publish_postgres`` from empty: every gold table (rows/s
  counts the rows of all seven tables, and the fact alone);
- ``republish`` — the same release again (nothing to do);
- ``incremental`` — after 1 % of the fact changed in gold... measured as a publish into a
  warehouse whose fact lost 1 % of its rows and had 1 % altered (only those are sent);
- ``copy_csv`` vs ``copy_binary`` — the two bulk-load paths for the fact (COPY CSV built by
  pyarrow.csv, COPY BINARY with ``write_row``) on the same rows;
- ``baseline`` — ``pandas.read_parquet`` of the fact's files + ``DataFrame.to_sql``
  (SQLAlchemy, psycopg, chunks of 10,000) on up to ``--baseline-rows`` fact rows.

Results go to ``benchmarks/results/publish-postgres-<rows>.json``; a Markdown table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_lake(rows: int, work: Path):
    from saleslake import api
    from saleslake.gold.release import latest_release
    from saleslake.lake import Lake

    home = work / "lake"
    s = api.settings(home=home)
    if latest_release(Lake(home)) is None:
        data = work / "data"
        if not (data / "generation_summary.json").is_file():
            api.generate_csv(data, rows=rows, seed=42)
        api.ingest_csv([data], settings=s)
        api.run(settings=s)
    return s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="generated order lines (default 1,000,000)")
    parser.add_argument("--baseline-rows", type=int, default=1_000_000, help="fact rows the baseline copies")
    parser.add_argument("--work", type=Path, default=HERE / "work")
    args = parser.parse_args()

    import pandas as pd
    import psycopg
    from deltalake import DeltaTable

    from saleslake import api
    from saleslake.devservices.postgres import (
        PASSWORD_ENV,
        PostgresService,
        create_database,
        destroy_postgres,
        start_postgres,
    )
    from saleslake.gold.release import latest_release
    from saleslake.lake import Lake
    from saleslake.serve import postgres as publisher

    work = args.work / f"publish-{args.rows}"
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    base = build_lake(args.rows, work)
    print(f"lake ready in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    lake = Lake(base.home)
    versions = latest_release(lake)
    import pyarrow.dataset as ds

    table_rows = {
        name: ds.dataset(DeltaTable(str(lake.gold / name), version=v).file_uris(), format="parquet").count_rows()
        for name, v in versions.items()
    }
    total_rows, fact_rows = sum(table_rows.values()), table_rows["fact_sales"]

    service = PostgresService(home=work / "postgres", port=free_port())
    start_postgres(service)
    for role, name in PASSWORD_ENV.items():
        os.environ[f"{name}_FILE"] = str(service.password_file(role))
    results: dict = {
        "rows": args.rows,
        "table_rows": table_rows,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    try:

        def fresh(name: str):
            create_database(service, name, "warehouse")
            return base.model_copy(
                update={"postgres": base.postgres.model_copy(update={"port": service.port, "warehouse_database": name})}
            )

        def conn_for(s):
            pg = s.postgres
            return psycopg.connect(
                host="127.0.0.1",
                port=pg.port,
                dbname=pg.warehouse_database,
                user=pg.warehouse_user,
                password=pg.password("warehouse"),
                autocommit=True,
            )

        s = fresh(f"wh_{os.getpid()}_a")
        done = api.publish_postgres(settings=s)
        results["publish"] = {
            "seconds": round(done.seconds, 3),
            "rows": total_rows,
            "rows_per_second": round(total_rows / done.seconds),
            "fact_rows": fact_rows,
            "fact_rows_per_second": round(fact_rows / done.seconds),
            "timings": done.timings,
        }
        print(f"publish: {done.seconds:.1f} s", file=sys.stderr)
        again = api.publish_postgres(settings=s)
        results["republish"] = {"seconds": round(again.seconds, 3), "skipped": again.skipped}

        # incremental: the warehouse drifts by 1 % deleted + 1 % altered facts; the publish
        # sends and writes only those (a fresh release id forces the comparison)
        with conn_for(s) as conn:
            step = 100
            conn.execute(f"DELETE FROM gold.fact_sales WHERE abs(hashtext(line_key) % {step}) = 0")
            conn.execute(f"UPDATE gold.fact_sales SET _row_hash = 0 WHERE abs(hashtext(line_key) % {step}) = 1")
            conn.execute("UPDATE gold.saleslake_publish_log SET release_id = 'drifted', table_versions = '{}'")
        inc = api.publish_postgres(settings=s)
        fact = inc.tables["fact_sales"]
        results["incremental"] = {
            "seconds": round(inc.seconds, 3),
            "fact_written": fact.written,
            "fact_sent": fact.sent,
            "fact_rows": fact_rows,
            "timings": inc.timings,
        }
        print(f"incremental: {inc.seconds:.1f} s, {fact.written} facts written", file=sys.stderr)

        # bulk-load paths on the same fact rows
        sample = min(fact_rows, 1_000_000)
        fact_table = DeltaTable(str(lake.gold / "fact_sales"), version=versions["fact_sales"])
        import duckdb

        from saleslake.lake import snapshot_view_sql

        duck = duckdb.connect()
        with conn_for(s) as conn:
            columns = [c for c in publisher._target_columns(conn, "gold", "fact_sales") if c != "_row_hash"]
            select = ", ".join(f'"{c}"' for c in columns)
            view = snapshot_view_sql(fact_table)
            conn.autocommit = False
            for kind in ("copy_csv", "copy_binary"):
                conn.execute("DROP TABLE IF EXISTS bench_copy")
                conn.execute("CREATE TEMP TABLE bench_copy (LIKE gold.fact_sales)")
                reader = duck.sql(f"SELECT {select} FROM ({view}) LIMIT {sample}").to_arrow_reader(100_000)
                started = time.perf_counter()
                if kind == "copy_csv":
                    publisher._copy_arrow(conn, "bench_copy", columns, reader)
                else:
                    types = conn.execute(
                        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                        "'gold.fact_sales'::regclass AND attnum > 0 AND NOT attisdropped AND attname <> '_row_hash' "
                        "ORDER BY attnum"
                    ).fetchall()
                    with (
                        conn.cursor() as cur,
                        cur.copy(f"COPY bench_copy ({select}) FROM STDIN (FORMAT BINARY)") as copy,
                    ):
                        copy.set_types([t[0].split("(")[0] for t in types])
                        for batch in reader:
                            for row in zip(*(col.to_pylist() for col in batch.columns)):
                                copy.write_row(row)
                seconds = time.perf_counter() - started
                conn.commit()
                results[kind] = {
                    "rows": sample,
                    "seconds": round(seconds, 3),
                    "rows_per_second": round(sample / seconds),
                }
                print(f"{kind}: {seconds:.1f} s", file=sys.stderr)
        duck.close()

        # baseline: pandas.read_parquet + DataFrame.to_sql
        import sqlalchemy

        sb = fresh(f"wh_{os.getpid()}_b")
        pg = sb.postgres
        engine = sqlalchemy.create_engine(
            sqlalchemy.URL.create(
                "postgresql+psycopg",
                username=pg.warehouse_user,
                password=pg.password("warehouse"),
                host="127.0.0.1",
                port=pg.port,
                database=pg.warehouse_database,
            )
        )
        started = time.perf_counter()
        copied = 0
        for uri in fact_table.file_uris():
            if copied >= args.baseline_rows:
                break
            frame = pd.read_parquet(uri)
            frame = frame.head(args.baseline_rows - copied)
            frame.to_sql("fact_sales", engine, schema="public", if_exists="append", index=False, chunksize=10_000)
            copied += len(frame)
        seconds = time.perf_counter() - started
        engine.dispose()
        results["baseline"] = {
            "rows": copied,
            "seconds": round(seconds, 3),
            "rows_per_second": round(copied / seconds),
            "method": "pandas.read_parquet + DataFrame.to_sql (SQLAlchemy, psycopg, chunksize 10000)",
        }
        results["speedup_vs_baseline"] = round(
            results["publish"]["fact_rows_per_second"] / results["baseline"]["rows_per_second"], 1
        )
    finally:
        # the cluster is scratch: each run's warehouses (~10 GB at 10M rows) go with it
        destroy_postgres(service)

    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"publish-postgres-{args.rows}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"| measure ({args.rows:,} order lines) | rows | seconds | rows/s |")
    print("|---|---:|---:|---:|")
    p = results["publish"]
    print(f"| publish, all 7 tables, from empty | {p['rows']:,} | {p['seconds']} | {p['rows_per_second']:,} |")
    print(f"| publish, fact rows only | {p['fact_rows']:,} | {p['seconds']} | {p['fact_rows_per_second']:,} |")
    print(f"| republish same release | 0 | {results['republish']['seconds']} | – |")
    i = results["incremental"]
    print(f"| incremental (2 % of facts drifted) | {i['fact_written']:,} written | {i['seconds']} | – |")
    for kind in ("copy_csv", "copy_binary"):
        c = results[kind]
        print(
            f"| bulk load {kind.replace('_', ' ')} (fact) | {c['rows']:,} | {c['seconds']} | {c['rows_per_second']:,} |"
        )
    b = results["baseline"]
    print(f"| baseline pandas read_parquet + to_sql | {b['rows']:,} | {b['seconds']} | {b['rows_per_second']:,} |")
    print(f"\nspeed-up vs baseline (fact rows/s): {results['speedup_vs_baseline']}×; results in {out}")


if __name__ == "__main__":
    main()
