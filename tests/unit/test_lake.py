"""Delta snapshot helpers: file pruning by statistics must never lose a row; a file
rewrite commits its adds, removes and positions at once or not at all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow as pa
import pytest
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

from saleslake.lake import STAGING_DIR, files_overlapping, register_datasets, replace_files, snapshot_view_sql

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
SCHEMA = pa.schema([("id", pa.int64()), ("ts", pa.timestamp("us", tz="UTC")), ("month", pa.string())])


def _append(path, ids, minutes):
    rows = pa.table(
        {
            "id": ids,
            "ts": [T0 + timedelta(minutes=m) if m is not None else None for m in minutes],
            "month": ["2026-11"] * len(ids),
        },
        schema=SCHEMA,
    )
    write_deltalake(str(path), rows, mode="append", partition_by=["month"])


def _ids(table: DeltaTable, files) -> list[int]:
    return [r[0] for r in duckdb.sql(f"SELECT id FROM ({snapshot_view_sql(table, files)}) ORDER BY id").fetchall()]


def test_only_files_whose_range_overlaps_are_read(tmp_path):
    _append(tmp_path, [1, 2], [0, 5])  # 10:00-10:05
    _append(tmp_path, [3, 4], [10, 15])  # 10:10-10:15
    _append(tmp_path, [5, 6], [20, 25])  # 10:20-10:25
    table = DeltaTable(str(tmp_path))
    files = files_overlapping(table, "ts", T0 + timedelta(minutes=12), T0 + timedelta(minutes=21))
    assert len(files) == 2 and _ids(table, files) == [3, 4, 5, 6]
    # bounds are inclusive
    assert _ids(table, files_overlapping(table, "ts", T0 + timedelta(minutes=5), T0 + timedelta(minutes=5))) == [1, 2]
    assert files_overlapping(table, "ts", T0 + timedelta(hours=1), T0 + timedelta(hours=2)) == []
    assert _ids(table, []) == []


def test_files_without_statistics_are_kept(tmp_path):
    _append(tmp_path, [1], [None])  # only NULLs: no min/max
    _append(tmp_path, [2], [30])
    table = DeltaTable(str(tmp_path))
    assert _ids(table, files_overlapping(table, "ts", T0, T0 + timedelta(minutes=1))) == [1]


def test_unknown_column_means_no_pruning(tmp_path):
    _append(tmp_path, [1], [0])
    assert files_overlapping(DeltaTable(str(tmp_path)), "nope", T0, T0) is None


def _rows(ids, minutes):
    return pa.table(
        {"id": ids, "ts": [T0 + timedelta(minutes=m) for m in minutes], "month": ["2026-11"] * len(ids)}, schema=SCHEMA
    )


def test_replace_files_adds_removes_and_records_positions_in_one_commit(tmp_path):
    _append(tmp_path, [1, 2], [0, 5])
    _append(tmp_path, [3, 4], [10, 15])
    table = DeltaTable(str(tmp_path))
    # one file per append; ``first`` holds ids 1 and 2
    first, second = sorted(table.file_uris(), key=lambda uri: _ids(table, [uri]))
    assert _ids(table, [first]) == [1, 2]
    version = table.version()
    # id 2 is replaced (the survivor 1 is passed back), id 5 is new
    replace_files(
        table,
        _rows([1, 2, 5], [0, 6, 30]).to_reader(),
        [first],
        ["month"],
        CommitProperties(app_transactions=[Transaction("test.app", 7)]),
    )
    table = DeltaTable(str(tmp_path))
    assert table.version() == version + 1 and table.transaction_version("test.app") == 7
    assert first not in table.file_uris() and second in table.file_uris()
    assert duckdb.sql(f"SELECT id, ts FROM ({snapshot_view_sql(table)}) WHERE id = 2").fetchall() == [
        (2, T0 + timedelta(minutes=6))
    ]
    assert _ids(table, None) == [1, 2, 3, 4, 5]
    # the new file kept its statistics: pruning still finds exactly it
    assert _ids(table, files_overlapping(table, "ts", T0 + timedelta(minutes=29), T0 + timedelta(minutes=31))) == [
        1,
        2,
        5,
    ]
    assert not (tmp_path / STAGING_DIR).exists()


def test_a_failed_replace_commits_nothing(tmp_path, monkeypatch):
    _append(tmp_path, [1, 2], [0, 5])
    table = DeltaTable(str(tmp_path))
    files, version = table.file_uris(), table.version()

    def crash(*args, **kwargs):
        raise OSError("disk gone")

    monkeypatch.setattr(DeltaTable, "create_write_transaction", crash)
    with pytest.raises(OSError):
        replace_files(table, _rows([1, 9], [0, 1]).to_reader(), files, ["month"], CommitProperties())
    table = DeltaTable(str(tmp_path))
    assert table.version() == version and table.file_uris() == files and _ids(table, None) == [1, 2]
    assert not (tmp_path / STAGING_DIR).exists()


def test_replace_refuses_a_file_outside_the_snapshot(tmp_path):
    _append(tmp_path, [1], [0])
    table = DeltaTable(str(tmp_path))
    with pytest.raises(ValueError, match="not a file"):
        replace_files(
            table, _rows([2], [1]).to_reader(), [str(tmp_path / "nope.parquet")], ["month"], CommitProperties()
        )
    assert _ids(DeltaTable(str(tmp_path)), None) == [1]


def test_a_dataset_view_filters_strings_across_files_written_as_string_and_as_string_view(tmp_path):
    # delta-rs MERGE writes string_view files beside the string files of plain writes; a
    # filter on a string column reading both failed ("no kernel matching (string, string_view)")
    kinds = {"string": pa.string(), "string_view": pa.string_view()}
    for month, (kind, ids) in zip(("2026-10", "2026-11"), (("string", ["a", "b"]), ("string_view", ["c", "d"]))):
        rows = pa.table({"k": pa.array(ids, kinds[kind]), "n": [1, 2], "month": [month, month]})
        write_deltalake(str(tmp_path), rows, mode="append", partition_by=["month"])
    con = duckdb.connect()
    register_datasets(con, {"silver.t": tmp_path})
    for where, keys in [
        ("k = 'c'", ["c"]),
        ("k = 'a'", ["a"]),
        ("k IN ('b', 'd')", ["b", "d"]),
        ("k > 'b'", ["c", "d"]),
        ("month = '2026-11' AND n = 2", ["d"]),
    ]:
        assert [k for (k,) in con.sql(f"SELECT k FROM silver.t WHERE {where} ORDER BY k").fetchall()] == keys, where
