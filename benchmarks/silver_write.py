"""Silver write strategies: Delta MERGE with a partition predicate vs a partition-scoped rewrite.

    .venv/bin/python benchmarks/silver_write.py --rows 1000000 --batch 100000 --corrections 0.01

Builds a silver-like table (month partitions, the sales_lines schema) of ``--rows`` lines
from generated data, then applies one incoming batch of ``--batch`` lines, of which a
share are corrections of existing lines spread over every month and the rest are new
lines in the latest months, three ways, each on a fresh copy of the table:

- ``merge``: what silver does when a batch replaces keys: one MERGE whose target scan is
  limited to the months that hold replaced keys or receive rows;
- ``rewrite``: read those months, drop the replaced keys, add the batch, and overwrite
  the months with ``write_deltalake(mode="overwrite", predicate=...)`` in one commit;
- ``append``: the fast path silver takes when no key is replaced (new lines only).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import duckdb
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from saleslake.contract import SALES_LINES_SCHEMA

HERE = Path(__file__).resolve().parent


def synthetic_silver(rows: int) -> pa.Table:
    """Lines over 48 months with realistic column widths (strings, decimals)."""
    con = duckdb.connect()
    names = SALES_LINES_SCHEMA.names
    rel = con.sql(
        f"""
        SELECT md5(i::VARCHAR) AS line_key, 'csv:bench' AS source_system, 'ORD-' || (i // 4) AS order_id,
               i::VARCHAR AS line_id, DATE '2021-01-01' + (i % 1461)::INT AS order_date, NULL::TIMESTAMPTZ AS order_ts,
               DATE '2021-01-03' + (i % 1461)::INT AS ship_date, 'Standard Class' AS ship_mode, 'High' AS order_priority,
               'CU-' || (i % 60000) AS customer_id, 'Customer ' || (i % 60000) AS customer_name, 'Consumer' AS segment,
               'City ' || (i % 900) AS city, 'State' AS state, 'Country' AS country, NULL AS postal_code,
               'EU' AS market, 'Central' AS region, NULL AS store_id, 'PR-' || (i % 3000) AS product_id,
               'Product ' || (i % 3000) AS product_name, 'Furniture' AS category, 'Chairs' AS sub_category,
               (1 + i % 9)::BIGINT AS quantity, (i % 997)::DECIMAL(18,4) AS unit_price,
               ((1 + i % 9) * (i % 997) + 1)::DECIMAL(18,4) AS sales, 0.1::DECIMAL(9,4) AS discount,
               (i % 50)::DECIMAL(18,4) AS profit, 12.5::DECIMAL(18,4) AS shipping_cost, 'USD' AS currency,
               0.0::DECIMAL(9,4) AS tax_rate, 0.0::DECIMAL(18,4) AS tax_amount, false AS is_suspected_fraud,
               []::VARCHAR[] AS fraud_reasons, false AS is_outlier, 100 AS dq_score, hash(i)::VARCHAR AS row_hash,
               NULL AS payment_method, NULL AS card_fingerprint,  -- POS columns, NULL for CSV lines
               'bronze/x.csv' AS bronze_uri, 'record:' || i AS source_position, 1::BIGINT AS landed_seq,
               'csv:1-1' AS batch_id, now() AS ingested_at,
               strftime(DATE '2021-01-01' + (i % 1461)::INT, '%Y-%m') AS order_month
        FROM range({rows}) t(i)
        """
    )
    return rel.select(", ".join(names)).to_arrow_table().cast(SALES_LINES_SCHEMA)


def incoming(base: pa.Table, batch: int, corrections: float) -> pa.Table:
    con = duckdb.connect()
    con.register("base", base)
    n_fix = int(batch * corrections)
    fixes = con.sql(
        f"SELECT * REPLACE (quantity + 1 AS quantity, 2::BIGINT AS landed_seq) FROM base USING SAMPLE {n_fix} ROWS (reservoir, 7)"
    )
    fresh = con.sql(
        f"SELECT * REPLACE (md5('new' || line_key) AS line_key, 2::BIGINT AS landed_seq, "
        f"DATE '2024-12-01' + (hash(line_key) % 31)::INT AS order_date, '2024-12' AS order_month) "
        f"FROM base LIMIT {batch - n_fix}"
    )
    return pa.concat_tables([fixes.to_arrow_table(), fresh.to_arrow_table()]).cast(SALES_LINES_SCHEMA)


def months_touched(table_path: Path, batch: pa.Table) -> list[str]:
    con = duckdb.connect()
    con.register("batch", batch)
    dataset = DeltaTable(str(table_path)).to_pyarrow_dataset()
    con.register("silver", dataset)
    rows = con.sql(
        "SELECT DISTINCT order_month FROM silver WHERE line_key IN (SELECT line_key FROM batch) "
        "UNION SELECT DISTINCT order_month FROM batch"
    ).fetchall()
    return sorted(r[0] for r in rows)


def merge(path: Path, batch: pa.Table) -> None:
    months = ", ".join(f"'{m}'" for m in months_touched(path, batch))
    (
        DeltaTable(str(path))
        .merge(batch, f"t.line_key = s.line_key AND t.order_month IN ({months})", source_alias="s", target_alias="t")
        .when_matched_update_all()
        .when_not_matched_insert_all()
        .execute()
    )


def rewrite(path: Path, batch: pa.Table) -> None:
    months = months_touched(path, batch)
    month_list = ", ".join(f"'{m}'" for m in months)
    con = duckdb.connect()
    con.register("batch", batch)
    con.register("silver", DeltaTable(str(path)).to_pyarrow_dataset())
    reader = con.sql(
        f"SELECT * FROM silver WHERE order_month IN ({month_list}) AND line_key NOT IN (SELECT line_key FROM batch) "
        "UNION ALL SELECT * FROM batch"
    ).to_arrow_reader(100_000)
    reader = pa.RecordBatchReader.from_batches(SALES_LINES_SCHEMA, (b.cast(SALES_LINES_SCHEMA) for b in reader))
    write_deltalake(str(path), reader, mode="overwrite", predicate=f"order_month IN ({month_list})")


def append(path: Path, batch: pa.Table) -> None:
    write_deltalake(str(path), batch, mode="append")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--corrections", type=float, default=0.01)
    parser.add_argument("--work", type=Path, default=HERE / "work" / "silver_write")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    base = synthetic_silver(args.rows)
    pristine = args.work / "pristine"
    write_deltalake(str(pristine), base, partition_by=["order_month"])
    batch = incoming(base, args.batch, args.corrections)
    fresh_only = batch.filter(pa.compute.equal(batch["order_month"], "2024-12"))
    results = {"rows": args.rows, "batch": args.batch, "corrections": args.corrections}
    for name, strategy, data in (
        ("merge", merge, batch),
        ("rewrite", rewrite, batch),
        ("append_new_only", append, fresh_only),
    ):
        target = args.work / name
        shutil.copytree(pristine, target)
        started = time.perf_counter()
        strategy(target, data)
        results[name] = round(time.perf_counter() - started, 2)
        count = DeltaTable(str(target)).to_pyarrow_dataset().count_rows()
        results[f"{name}_rows_after"] = count
        shutil.rmtree(target)
    shutil.rmtree(args.work, ignore_errors=True)
    (HERE / "results" / f"silver-write-{args.rows}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
