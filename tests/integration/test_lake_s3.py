"""The lake's Delta seam on a real S3-compatible server (S3Proxy, fixture ``s3_settings``):
tables of a lake at ``s3://lakehouse/<test>/`` are written, committed and read back
through :class:`saleslake.lake.Lake`, and their objects are in the bucket. DuckDB reads
of their snapshots (``snapshot_view_sql``) go through s3fs registered on the connection:
the stages' session and the ad-hoc readers (manifest, reference, positions)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from deltalake import CommitProperties, Transaction

from saleslake import reference
from saleslake.bronze import MANIFEST_SCHEMA, landed_csv_objects, manifest_rows, pending_csv_objects
from saleslake.contract import SALES_LINES_SCHEMA
from saleslake.errors import UserError
from saleslake.lake import (
    Lake,
    ensure_delta,
    files_overlapping,
    open_delta,
    read_delta,
    register_datasets,
    snapshot_view_sql,
    txn_version,
    write_delta,
)
from saleslake.runs import Ledger, StageCounts, StageRecord, ledger_rows
from saleslake.silver import process
from saleslake.sources import postgres as oltp_source
from saleslake.storage import s3_filesystem


@pytest.fixture
def s3_lake(s3_settings, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lake:
    """A fresh lake under its own prefix of the bucket ``lakehouse``; its local scratch
    (DuckDB's spill folder, under the user's cache) in the test's folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
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


def _lines(order_ids: list[str], day: date = date(2024, 3, 5)) -> pa.Table:
    rows = [
        {
            "line_key": f"k-{order_id}",
            "order_id": order_id,
            "order_date": day,
            "order_month": day.strftime("%Y-%m"),
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


def test_a_stage_session_reads_silver_snapshots_from_the_bucket(s3_lake: Lake, s3_settings, tmp_path: Path):
    """The session silver, dedup, the stream and the gate query with reads a snapshot's
    objects (all files, or the ones files_overlapping keeps) and spills to a local folder."""
    for lines in (_lines(["o-1", "o-2"]), _lines(["o-3"], date(2024, 4, 2))):
        write_delta(s3_lake.sales_lines, lines, mode="append", partition_by=["order_month"])
    table = read_delta(s3_lake.sales_lines)
    con = process.connect(s3_settings, s3_lake)

    everything = con.sql(f"SELECT count(*), sum(quantity), max(order_month) FROM ({snapshot_view_sql(table)})")
    assert everything.fetchall() == [(3, 6, "2024-04")]
    march_files = files_overlapping(table, "order_date", date(2024, 3, 1), date(2024, 3, 31))
    assert march_files is not None and len(march_files) == 1 and march_files[0].startswith("s3://lakehouse/")
    by_file = con.sql(f"SELECT order_id, filename FROM ({snapshot_view_sql(table, march_files, filename=True)})")
    assert sorted(by_file.fetchall()) == [("o-1", march_files[0]), ("o-2", march_files[0])]
    (spill,) = con.execute("SELECT current_setting('temp_directory')").fetchall()[0]
    assert Path(spill).is_relative_to(tmp_path / "cache" / "saleslake")


def _manifest_row(seq: int, object_id: str, replaces_seq: int | None = None) -> dict:
    return {
        "object_id": object_id,
        "landed_seq": seq,
        "kind": "csv",
        "source": "pos",
        "source_system": "csv:pos",
        "original_name": "pos.csv",
        "size_bytes": 100 + seq,
        "bronze_uri": f"bronze/csv/ingest_date=2024-03-05/{object_id}.csv",
        "landed_at": datetime(2024, 3, 5, 12, seq, tzinfo=UTC),
        "replaces_seq": replaces_seq,
    }


def test_the_bronze_manifest_is_read_from_the_bucket(s3_lake: Lake):
    """Landing 3 reparses landing 1's file: the manifest readers pick each file's latest parse."""
    first, second = "a" * 64, "b" * 64
    rows = [_manifest_row(1, first), _manifest_row(2, second), _manifest_row(3, first, replaces_seq=1)]
    write_delta(s3_lake.manifest, pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), mode="append")

    assert [(r["landed_seq"], r["object_id"]) for r in manifest_rows(s3_lake)] == [(1, first), (2, second), (3, first)]
    assert [(r["landed_seq"], r["version_seq"]) for r in pending_csv_objects(s3_lake, 0)] == [(2, 2), (3, 1)]
    by_then = landed_csv_objects(s3_lake, 2, ["csv:pos"])
    assert [(r["landed_seq"], r["version_seq"]) for r in by_then] == [(1, 1), (2, 2)]


def test_reference_rows_are_registered_once_in_the_bucket(s3_lake: Lake):
    """register() compares the incoming rows with the table's snapshot (read by DuckDB)."""
    seen = datetime(2024, 3, 1, tzinfo=UTC)
    states = [
        {"store_id": "S1", "store_name": "Uptown", "updated_at": seen},
        {"store_id": "S2", "store_name": "Harbour", "updated_at": seen},
    ]
    rows = pa.Table.from_pylist(states, schema=reference.STORES.schema)
    assert reference.register(s3_lake, reference.STORES, rows) == 2
    renamed = pa.Table.from_pylist(
        [*states, {"store_id": "S1", "store_name": "Uptown Mall", "updated_at": datetime(2024, 3, 9, tzinfo=UTC)}],
        schema=reference.STORES.schema,
    )
    assert reference.register(s3_lake, reference.STORES, renamed) == 1
    held = read_delta(s3_lake.reference_table("stores")).to_pyarrow_table()
    assert sorted(held["store_name"].to_pylist()) == ["Harbour", "Uptown", "Uptown Mall"]


def test_operational_extract_positions_are_read_from_the_bucket(s3_lake: Lake):
    """The positions of the extract silver committed (its application transaction)."""
    extracted = datetime(2024, 3, 5, 12, tzinfo=UTC)
    positions = [
        {"extract_seq": seq, "extract_id": f"x{seq}", "table_name": "orders", "watermark_ts": extracted}
        | {"watermark_key": key, "tail": [{"key": key, "updated_at": extracted}], "rows": 1}
        for seq, key in ((0, "o-7"), (1, "o-9"))
    ]
    oltp_source.write_positions(s3_lake, positions)
    commit = CommitProperties(app_transactions=[Transaction(oltp_source.APP_ID, 0)])
    write_delta(s3_lake.sales_lines, _lines(["o-7"]), mode="append", commit_properties=commit)

    read = oltp_source.read_positions(s3_lake)  # extract 1 never committed: done again

    assert (read.committed_seq, read.next_seq) == (0, 2)
    orders = read.tables["orders"]
    assert (orders.watermark_key, orders.tail) == ("o-7", [("o-7", extracted)])


def test_what_still_needs_local_files_is_refused_in_one_line(s3_lake: Lake):
    with pytest.raises(UserError, match="not supported on an object-store lake yet") as caught:
        s3_lake.bronze.mkdir()
    assert "\n" not in str(caught.value) and s3_lake.location.uri in str(caught.value)
