"""Delta snapshot helpers: file pruning by statistics must never lose a row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from saleslake.lake import files_overlapping, snapshot_view_sql

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
SCHEMA = pa.schema([("id", pa.int64()), ("ts", pa.timestamp("us", tz="UTC")), ("month", pa.string())])


def _append(path, ids, minutes):
    rows = pa.table({"id": ids, "ts": [T0 + timedelta(minutes=m) if m is not None else None for m in minutes],
                     "month": ["2026-11"] * len(ids)}, schema=SCHEMA)
    write_deltalake(str(path), rows, mode="append", partition_by=["month"])


def _ids(table: DeltaTable, files) -> list[int]:
    return [r[0] for r in duckdb.sql(f"SELECT id FROM ({snapshot_view_sql(table, files)}) ORDER BY id").fetchall()]


def test_only_files_whose_range_overlaps_are_read(tmp_path):
    _append(tmp_path, [1, 2], [0, 5])      # 10:00-10:05
    _append(tmp_path, [3, 4], [10, 15])    # 10:10-10:15
    _append(tmp_path, [5, 6], [20, 25])    # 10:20-10:25
    table = DeltaTable(str(tmp_path))
    files = files_overlapping(table, "ts", T0 + timedelta(minutes=12), T0 + timedelta(minutes=21))
    assert len(files) == 2 and _ids(table, files) == [3, 4, 5, 6]
    # bounds are inclusive
    assert _ids(table, files_overlapping(table, "ts", T0 + timedelta(minutes=5), T0 + timedelta(minutes=5))) == [1, 2]
    assert files_overlapping(table, "ts", T0 + timedelta(hours=1), T0 + timedelta(hours=2)) == []
    assert _ids(table, []) == []


def test_files_without_statistics_are_kept(tmp_path):
    _append(tmp_path, [1], [None])         # only NULLs: no min/max
    _append(tmp_path, [2], [30])
    table = DeltaTable(str(tmp_path))
    assert _ids(table, files_overlapping(table, "ts", T0, T0 + timedelta(minutes=1))) == [1]


def test_unknown_column_means_no_pruning(tmp_path):
    _append(tmp_path, [1], [0])
    assert files_overlapping(DeltaTable(str(tmp_path)), "nope", T0, T0) is None
