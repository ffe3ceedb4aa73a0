"""The lake's Delta seam on a real S3-compatible server (S3Proxy, fixture ``s3_settings``):
tables of a lake at ``s3://lakehouse/<test>/`` are written, committed and read back
through :class:`saleslake.lake.Lake`, and their objects are in the bucket. DuckDB reads
of their snapshots (``snapshot_view_sql``) go through s3fs registered on the connection:
the stages' session and the ad-hoc readers (manifest, reference, positions)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from deltalake import CommitProperties, Transaction

from saleslake import lake as lake_module
from saleslake import reference
from saleslake.bronze import MANIFEST_SCHEMA, landed_csv_objects, manifest_rows, pending_csv_objects
from saleslake.contract import SALES_LINES_SCHEMA
from saleslake.crashpoints import CRASH_AT_ENV
from saleslake.errors import UserError
from saleslake.lake import (
    STAGING_DIR,
    Lake,
    ensure_delta,
    files_overlapping,
    open_delta,
    read_delta,
    register_datasets,
    replace_files,
    snapshot_connection,
    snapshot_view_sql,
    txn_version,
    write_delta,
)
from saleslake.pipeline.batch import lake_exists
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
    assert not lake_exists(s3_lake)
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
    assert lake_exists(s3_lake)  # publish postgres records its run in the ledger then


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


def _replace_setup(lake: Lake) -> tuple[list[str], list[str]]:
    """Silver with two March files (o-1, o-2 | o-3) and one April file (o-4); returns
    (the file holding o-1 and o-2, the other files)."""
    for lines in (_lines(["o-1", "o-2"]), _lines(["o-3"]), _lines(["o-4"], date(2024, 4, 2))):
        write_delta(lake.sales_lines, lines, mode="append", partition_by=["order_month"])
    table = read_delta(lake.sales_lines)
    con = lake.register_filesystem(duckdb.connect())
    by_file = con.sql(f"SELECT order_id, filename FROM ({snapshot_view_sql(table, filename=True)})").fetchall()
    holding = sorted({f for order_id, f in by_file if order_id in ("o-1", "o-2")})
    assert len(holding) == 1
    return holding, sorted(set(table.file_uris()) - set(holding))


def _replacement() -> pa.Table:
    """o-2 replaced (quantity 7), its file's survivor o-1 passed back, o-5 new."""
    rows = _lines(["o-1", "o-2", "o-5"]).to_pylist()
    rows[1]["quantity"] = 7
    return pa.Table.from_pylist(rows, schema=SALES_LINES_SCHEMA)


def _silver_rows(lake: Lake) -> list[tuple]:
    table = read_delta(lake.sales_lines)
    with snapshot_connection(lake) as con:
        return con.sql(
            f"SELECT order_id, quantity, order_month FROM ({snapshot_view_sql(table)}) ORDER BY order_id"
        ).fetchall()


EXPECTED_AFTER_REPLACE = [
    ("o-1", 2, "2024-03"),
    ("o-2", 7, "2024-03"),
    ("o-3", 2, "2024-03"),
    ("o-4", 2, "2024-04"),
    ("o-5", 2, "2024-03"),
]


def test_replace_files_rewrites_silver_files_in_the_bucket_in_one_commit(s3_lake: Lake):
    holding, others = _replace_setup(s3_lake)
    before = read_delta(s3_lake.sales_lines)
    commit = CommitProperties(app_transactions=[Transaction("saleslake.test", 9)])

    replace_files(before, _replacement().to_reader(), holding, ["order_month"], commit)

    after = read_delta(s3_lake.sales_lines)
    assert after.version() == before.version() + 1 and after.transaction_version("saleslake.test") == 9
    assert _silver_rows(s3_lake) == EXPECTED_AFTER_REPLACE  # 3 rows in for 2 out: 4 + 1 lines
    files = after.file_uris()
    assert holding[0] not in files and set(others) <= set(files) and len(files) == len(others) + 1
    # the new file sits where a plain write puts it, and the staging prefix is gone
    (added,) = set(files) - set(others)
    assert added.startswith(f"{s3_lake.sales_lines.uri}/order_month=2024-03/part-")
    keys = _keys(s3_lake, "silver", "sales_lines")
    assert not [k for k in keys if f"/{STAGING_DIR}/" in k]
    # Arrow datasets (readers) and pruning by statistics see the rewrite too
    con = duckdb.connect()
    register_datasets(con, {"silver.sales_lines": s3_lake.sales_lines})
    assert con.sql("SELECT count(*), sum(quantity) FROM silver.sales_lines").fetchall() == [(5, 15)]
    march = files_overlapping(after, "order_date", date(2024, 3, 5), date(2024, 3, 5))
    assert march is not None and sorted(march) == sorted(f for f in files if "order_month=2024-03" in f)


_KILLED_REPLACE = """
import sys
import pyarrow as pa
from deltalake import CommitProperties, Transaction
from saleslake.config import StorageSettings
from saleslake.contract import SALES_LINES_SCHEMA
from saleslake.lake import Lake, read_delta, replace_files

uri, storage, remove = sys.argv[1], StorageSettings.model_validate_json(sys.argv[2]), sys.argv[3]
lake = Lake(uri, storage)
rows = pa.ipc.open_stream(sys.stdin.buffer.read()).read_all().cast(SALES_LINES_SCHEMA)
commit = CommitProperties(app_transactions=[Transaction("saleslake.test", 9)])
replace_files(read_delta(lake.sales_lines), rows.to_reader(), [remove], ["order_month"], commit)
"""


def test_a_replace_killed_before_its_commit_leaves_the_table_as_it_was_and_a_rerun_converges(
    s3_lake: Lake, monkeypatch: pytest.MonkeyPatch
):
    holding, _ = _replace_setup(s3_lake)
    version, rows_before = read_delta(s3_lake.sales_lines).version(), _silver_rows(s3_lake)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, SALES_LINES_SCHEMA) as writer:
        writer.write_table(_replacement())
    env = {**os.environ, CRASH_AT_ENV: "lake.replace_files.before_commit:1"}
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_REPLACE, s3_lake.location.uri, s3_lake.storage.model_dump_json(), holding[0]],
        input=sink.getvalue().to_pybytes(),
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]

    # killed with the new file moved in and the scratch table left: nothing committed
    table = read_delta(s3_lake.sales_lines)
    assert table.version() == version and table.transaction_version("saleslake.test") is None
    assert _silver_rows(s3_lake) == rows_before
    keys = _keys(s3_lake, "silver", "sales_lines")
    assert [k for k in keys if f"/{STAGING_DIR}/" in k and k.endswith(".json")]
    parquet = [k for k in keys if k.endswith(".parquet") and f"/{STAGING_DIR}/" not in k]
    assert len(parquet) == len(table.file_uris()) + 1  # the moved file, referenced by no version

    # the rerun (after the leftover scratch counts as stale) converges
    monkeypatch.setattr(lake_module, "STALE_STAGING_SECONDS", 0)
    commit = CommitProperties(app_transactions=[Transaction("saleslake.test", 9)])
    replace_files(table, _replacement().to_reader(), holding, ["order_month"], commit)
    after = read_delta(s3_lake.sales_lines)
    assert after.version() == version + 1 and after.transaction_version("saleslake.test") == 9
    assert _silver_rows(s3_lake) == EXPECTED_AFTER_REPLACE
    assert not [k for k in _keys(s3_lake, "silver", "sales_lines") if f"/{STAGING_DIR}/" in k]
