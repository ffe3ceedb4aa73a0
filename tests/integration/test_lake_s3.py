"""The lake's Delta seam on a real S3-compatible server (S3Proxy, fixture ``s3_settings``):
tables of a lake at ``s3://lakehouse/<test>/`` are written, committed and read back
through :class:`saleslake.lake.Lake`, and their objects are in the bucket."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import duckdb
import pyarrow as pa
import pytest
from deltalake import CommitProperties, Transaction

from saleslake.contract import SALES_LINES_SCHEMA
from saleslake.errors import UserError
from saleslake.lake import Lake, ensure_delta, open_delta, read_delta, register_datasets, txn_version, write_delta
from saleslake.runs import Ledger, StageCounts, StageRecord, ledger_rows
from saleslake.storage import s3_filesystem


@pytest.fixture
def s3_lake(s3_settings, request: pytest.FixtureRequest) -> Lake:
    """A fresh lake under its own prefix of the bucket ``lakehouse``."""
    return Lake(f"s3://lakehouse/{request.node.name[:40]}-{uuid.uuid4().hex[:8]}", s3_settings.storage)


def _keys(lake: Lake, *parts: str) -> list[str]:
    fs = s3_filesystem(lake.storage)
    return sorted(str(k) for k in fs.find(lake.location.join(*parts).removeprefix("s3://")))


def test_the_run_ledger_is_written_to_the_bucket_and_read_back(s3_lake: Lake):
    started = datetime(2024, 3, 5, 12, 0, tzinfo=UTC)
    ledger = Ledger(s3_lake, "run-1", "run")
    ledger.record(StageRecord("silver", "running", started))
    ledger.record(
        StageRecord(
            "silver", "succeeded", started, started, StageCounts(rows_read=10, rows_valid=8, rows_quarantined=2)
        )
    )
    Ledger(s3_lake, "run-2", "rebuild gold").record(StageRecord("gold", "failed", started, started, error="boom"))

    rows = ledger_rows(s3_lake)  # DuckDB reads the objects through s3fs

    assert {(r["run_id"], r["stage"], r["status"]) for r in rows} == {
        ("run-1", "silver", "succeeded"),
        ("run-2", "gold", "failed"),
    }
    silver = next(r for r in rows if r["run_id"] == "run-1")
    assert (silver["rows_read"], silver["rows_valid"], silver["rows_quarantined"]) == (10, 8, 2)
    assert read_delta(s3_lake.runs).version() == 2  # three commits, one per record
    keys = _keys(s3_lake, "system", "runs")
    assert sum(k.endswith(".parquet") for k in keys) == 3
    assert any(k.endswith("_delta_log/00000000000000000002.json") for k in keys)
    assert s3_lake.runs.uri.startswith("s3://lakehouse/") and s3_lake.runs.local is None


def _lines(order_ids: list[str]) -> pa.Table:
    rows = [
        {
            "line_key": f"k-{order_id}",
            "order_id": order_id,
            "order_date": date(2024, 3, 5),
            "order_month": "2024-03",
            "quantity": 2,
        }
        for order_id in order_ids
    ]
    return pa.Table.from_pylist(rows, schema=SALES_LINES_SCHEMA)


def test_silver_lines_committed_with_their_position_on_s3(s3_lake: Lake):
    """ensure_delta creates the table in the bucket; an append carrying an application
    transaction is read back (rows, position) by delta-rs and by DuckDB."""
    assert open_delta(s3_lake.sales_lines) is None
    table = ensure_delta(s3_lake.sales_lines, SALES_LINES_SCHEMA, ["order_month"])
    assert table.version() == 0 and txn_version(s3_lake.sales_lines, "saleslake.csv") == -1

    for seq, ids in ((1, ["o-1", "o-2"]), (2, ["o-3"])):
        commit = CommitProperties(app_transactions=[Transaction("saleslake.csv", seq)])
        write_delta(s3_lake.sales_lines, _lines(ids), mode="append", commit_properties=commit)

    assert txn_version(s3_lake.sales_lines, "saleslake.csv") == 2
    assert read_delta(s3_lake.sales_lines, version=1).to_pyarrow_table().num_rows == 2
    assert "silver.sales_lines" in s3_lake.delta_tables()
    con = duckdb.connect()
    register_datasets(con, {"silver.sales_lines": s3_lake.sales_lines})
    assert con.sql("SELECT count(*), sum(quantity), min(order_id) FROM silver.sales_lines").fetchall() == [
        (3, 6, "o-1")
    ]
    parquet = [k for k in _keys(s3_lake, "silver", "sales_lines") if k.endswith(".parquet")]
    assert len(parquet) == 2 and all("/order_month=2024-03/" in k for k in parquet)


def test_gold_tables_are_listed_from_the_bucket(s3_lake: Lake):
    assert s3_lake.gold_table_names() == []
    for name in ("dim_store", "fact_sales"):
        write_delta(s3_lake.gold_table(name), pa.table({"k": [1, 2]}), mode="append")
    assert s3_lake.gold_table_names() == ["dim_store", "fact_sales"]
    assert {n for n in s3_lake.delta_tables() if n.startswith("gold.")} == {"gold.dim_store", "gold.fact_sales"}


def test_what_still_needs_local_files_is_refused_in_one_line(s3_lake: Lake):
    with pytest.raises(UserError, match="not supported on an object-store lake yet") as caught:
        s3_lake.bronze.mkdir()
    assert "\n" not in str(caught.value) and s3_lake.location.uri in str(caught.value)
