"""The POS line key index (silver/line_keys.py): built once from silver, found by key,
appended without repeats (a rerun after a crash adds nothing)."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime

import duckdb
import pytest
from deltalake import DeltaTable, write_deltalake
from gold_helpers import lines_table, silver_line

from saleslake.contract import SALES_LINES_SCHEMA
from saleslake.lake import Lake, ensure_delta
from saleslake.silver.line_keys import KEY_SQL, LineKeys


def pos_line(order_id: str, when: datetime) -> dict:
    return silver_line(order_id, source_system="pos", order_date=when.date(), order_ts=when)


@pytest.fixture
def con():
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    yield con
    con.close()


def silver(lake: Lake, rows: list[dict]) -> DeltaTable:
    write_deltalake(lake.sales_lines.uri, lines_table(rows), partition_by=["order_month"], mode="append")
    return DeltaTable(lake.sales_lines.uri)


def index_rows(lake: Lake, con) -> set[tuple]:
    con.register("index_rows", DeltaTable(lake.pos_line_keys.uri).to_pyarrow_dataset())
    try:
        return set(con.execute("SELECT key, order_ts, order_month FROM index_rows").fetchall())
    finally:
        con.unregister("index_rows")


def key_of(line_key: str) -> int:
    return int(line_key[:15], 16)


def test_the_key_is_the_first_60_bits_of_the_line_key(con):
    for line_key in ("f" * 32, "0123456789abcdef" * 2, hashlib.md5(b"pos").hexdigest()):
        assert con.execute(f"SELECT {KEY_SQL.format(repr(line_key))}").fetchone()[0] == key_of(line_key)


def test_a_lake_from_before_the_index_gets_it_from_silvers_pos_lines_in_one_commit(tmp_path, con):
    lake = Lake(tmp_path)
    march, june = datetime(2026, 3, 3, 9, tzinfo=UTC), datetime(2026, 6, 1, 12, tzinfo=UTC)
    rows = [pos_line("T1", march), pos_line("T2", june), silver_line("CSV-1", order_date=date(2026, 3, 3))]
    lines = silver(lake, rows)
    LineKeys(lake).ensure(con, lines)
    assert index_rows(lake, con) == {
        (key_of(rows[0]["line_key"]), march, "2026-03"),
        (key_of(rows[1]["line_key"]), june, "2026-06"),
    }
    assert DeltaTable(lake.pos_line_keys.uri).version() == 0
    # a second stream process opens it, never builds it again
    LineKeys(lake).ensure(con, lines)
    assert DeltaTable(lake.pos_line_keys.uri).version() == 0


def test_a_new_lake_starts_with_an_empty_index(tmp_path, con):
    lake = Lake(tmp_path)
    keys = LineKeys(lake)
    keys.ensure(con, ensure_delta(lake.sales_lines, SALES_LINES_SCHEMA, ["order_month"]))
    assert index_rows(lake, con) == set()


def test_earlier_versions_are_found_by_key_and_recorded_once(tmp_path, con):
    lake = Lake(tmp_path)
    march, april = datetime(2026, 3, 3, 9, tzinfo=UTC), datetime(2026, 4, 12, 9, tzinfo=UTC)
    old = pos_line("T1", march)
    lines = silver(lake, [old])
    keys = LineKeys(lake)
    keys.ensure(con, lines)
    # the batch: T1 again 40 days later, and a new T2
    batch = lines_table([pos_line("T1", april), pos_line("T2", april)])
    con.register("batch", batch)
    con.execute("CREATE TEMP VIEW valid AS SELECT * FROM batch")
    con.execute("CREATE TEMP VIEW upserts AS SELECT * FROM batch")

    earlier = keys.find_earlier(con)
    assert (earlier.months, earlier.low, earlier.high) == (["2026-03"], march, march)
    assert earlier.existing_filter() == "s.source_system = 'pos' AND s.order_month IN ('2026-03')"
    assert earlier.files(lines) == lines.file_uris()  # the March file holds T1
    assert keys.record(con) == 2  # T1 at its new time, T2
    # a rerun of the same batch (the lines commit never happened): nothing more
    keys.ensure(con, lines)
    earlier = keys.find_earlier(con)
    assert (earlier.months, earlier.low, earlier.high) == (["2026-03", "2026-04"], march, april)
    assert keys.record(con) == 0
    assert len(index_rows(lake, con)) == 3


def test_a_batch_of_new_keys_reads_no_silver_file(tmp_path, con):
    lake = Lake(tmp_path)
    lines = silver(lake, [pos_line("T1", datetime(2026, 3, 3, 9, tzinfo=UTC))])
    keys = LineKeys(lake)
    keys.ensure(con, lines)
    con.register("batch", lines_table([pos_line("T9", datetime(2026, 3, 3, 9, 5, tzinfo=UTC))]))
    con.execute("CREATE TEMP VIEW valid AS SELECT * FROM batch")
    earlier = keys.find_earlier(con)
    assert earlier.files(lines) == [] and earlier.existing_filter() == "false"
