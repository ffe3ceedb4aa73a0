"""``query`` and every reader over the lake are read-only by construction: the connection
itself refuses writes, file and network access, extensions and settings, whatever
statement carries them; the statement check in front only makes the message clearer.

The lake here is a few small Delta tables written in-process (silver, system, a gold
release), so each attack can be thrown straight at the connection, bypassing run_query.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from helpers import sql
from saleslake.errors import UserError
from saleslake.gold.release import record_release
from saleslake.lake import Lake, TableLocation, read_delta, write_delta
from saleslake.serve import freshness
from saleslake.serve.dashboard import data
from saleslake.serve.query import reader_connection, run_query


def _write(path: Path | TableLocation, table: pa.Table, partition_by: list[str] | None = None) -> int:
    write_delta(path, table, mode="append", partition_by=partition_by)
    return read_delta(path).version()


@pytest.fixture
def small_lake(lake: Lake) -> Lake:
    now = datetime(2024, 3, 5, 12, tzinfo=UTC)
    lines = pa.table(
        {
            "line_key": ["a", "b", "c"],
            "source_system": ["csv:emea", "csv:emea", "pos"],
            "order_id": ["O-1", "O-2", "O-3"],
            "order_date": pa.array([datetime(2024, 2, 1).date(), datetime(2024, 3, 1).date(), None], pa.date32()),
            "order_ts": pa.array([None, None, now], pa.timestamp("us", tz="UTC")),
            "sales": pa.array([Decimal("10.5000"), Decimal("20.2500"), Decimal("3.0000")], pa.decimal128(18, 4)),
            "fraud_reasons": pa.array([[], ["amount"], None], pa.list_(pa.string())),
            "ingested_at": pa.array([now, now, now], pa.timestamp("us", tz="UTC")),
            "order_month": ["2024-02", "2024-03", "2024-03"],
        }
    )
    _write(lake.sales_lines, lines, ["order_month"])
    _write(
        lake.quarantine,
        pa.table({"reasons": pa.array([["invalid_date:order_date", "invalid_number:sales"]]), "landed_seq": [1]}),
    )
    _write(lake.runs, pa.table({"run_id": ["r1", "r2"], "status": ["succeeded", "failed"]}))
    fact = pa.table(
        {
            "order_month": ["2024-02", "2024-03"],
            "source_system": ["csv:emea", "csv:emea"],
            "net_sales": pa.array([Decimal("10.50"), Decimal("20.25")], pa.decimal128(18, 2)),
        }
    )
    versions = {"fact_sales": _write(lake.gold / "fact_sales", fact, ["order_month"])}
    versions["dim_date"] = _write(lake.gold / "dim_date", pa.table({"date_key": [20240201, 20240301]}))
    record_release(lake, "r1", versions)
    return lake


def fingerprint(root: Path) -> dict[str, str]:
    """Every file under ``root`` with the sha256 of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def delta_log(lake: Lake) -> Path:
    return lake.gold / "fact_sales" / "_delta_log" / f"{0:020d}.json"


def attacks(lake: Lake, outside: Path) -> dict[str, str]:
    log = delta_log(lake)
    return {
        "copy over a gold Delta log": f"COPY (SELECT 'x') TO '{log}' (FORMAT csv)",
        "explain analyze copy": f"EXPLAIN ANALYZE COPY (SELECT 'x') TO '{log}' (FORMAT csv)",
        "copy to a new file": f"COPY (SELECT 1) TO '{outside / 'copied.csv'}'",
        "export database": f"EXPORT DATABASE '{outside / 'export'}'",
        "attach a database file": f"ATTACH '{outside / 'attached.duckdb'}' AS x",
        "install": "INSTALL httpfs",
        "load": "LOAD httpfs",
        "set external access": "SET enable_external_access = true",
        "reset external access": "RESET enable_external_access",
        "unlock": "SET lock_configuration = false",
        "widen allowed folders": f"SET allowed_directories = ['{outside}']",
        "read a local file": "SELECT * FROM read_csv('/etc/passwd')",
        "read a lake file directly": f"SELECT * FROM read_text('{log}')",
        "glob the lake": f"SELECT * FROM glob('{lake.home}/**')",
        "read over the network": "SELECT * FROM read_csv('https://example.com/x.csv')",
    }


ATTACKS = sorted(attacks(Lake(Path("/lake")), Path("/out")))


@pytest.mark.parametrize("name", ATTACKS)
def test_the_reader_connection_itself_refuses_it(small_lake: Lake, tmp_path: Path, name: str):
    outside = tmp_path / "outside"
    outside.mkdir()
    before = fingerprint(small_lake.home)
    con = reader_connection(small_lake)
    try:
        with pytest.raises(duckdb.Error):
            con.execute(attacks(small_lake, outside)[name]).fetchall()
        # still a working reader afterwards, still locked
        assert con.execute("SELECT count(*) FROM silver.sales_lines").fetchall() == [(3,)]
        assert con.execute("SELECT current_setting('enable_external_access')").fetchall() == [(False,)]
    finally:
        con.close()
    assert fingerprint(small_lake.home) == before
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("name", ATTACKS)
def test_query_refuses_it_with_one_line(small_lake: Lake, tmp_path: Path, name: str):
    outside = tmp_path / "outside"
    outside.mkdir()
    before = fingerprint(small_lake.home)
    with pytest.raises(UserError) as refused:
        run_query(small_lake, attacks(small_lake, outside)[name])
    assert "\n" not in str(refused.value)
    assert fingerprint(small_lake.home) == before
    assert list(outside.iterdir()) == []


def test_the_dashboard_and_freshness_readers_are_protected_too(small_lake: Lake, tmp_path: Path):
    before = fingerprint(small_lake.home)
    con = data.open_reader(small_lake)
    try:
        cursor = con.cursor()  # the dashboard queries on cursors
        with pytest.raises(duckdb.Error):
            cursor.execute(f"EXPLAIN ANALYZE COPY (SELECT 'x') TO '{delta_log(small_lake)}' (FORMAT csv)")
        with pytest.raises(duckdb.Error):
            cursor.execute("SELECT * FROM read_csv('/etc/passwd')")
        assert cursor.execute("SELECT sum(net_sales) FROM gold.fact_sales").fetchall() == [(Decimal("30.75"),)]
    finally:
        con.close()
    assert [r["silver_lines"] for r in freshness.freshness(small_lake)] == [2, 1]
    assert fingerprint(small_lake.home) == before


def test_reading_local_files_needs_an_allowed_folder(small_lake: Lake, tmp_path: Path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "rates.csv").write_text("country,rate\nGermany,0.19\n")
    read = f"SELECT country, rate FROM read_csv('{inputs / 'rates.csv'}')"
    with pytest.raises(UserError, match="--allow-files"):
        run_query(small_lake, read)
    assert run_query(small_lake, read, [inputs]).to_pylist() == [{"country": "Germany", "rate": 0.19}]
    with pytest.raises(UserError, match="cannot access files"):  # only under the folder allowed
        run_query(small_lake, "SELECT * FROM read_csv('/etc/passwd')", [inputs])
    before = fingerprint(inputs)
    for write in (
        f"COPY (SELECT 1) TO '{inputs / 'x.csv'}'",
        f"EXPLAIN ANALYZE COPY (SELECT 1) TO '{inputs / 'x.csv'}'",
    ):
        with pytest.raises(UserError, match="read-only"):
            run_query(small_lake, write, [inputs])
    assert fingerprint(inputs) == before
    for overlapping in (small_lake.home, small_lake.gold, tmp_path):
        with pytest.raises(UserError, match="overlaps the lake"):
            run_query(small_lake, "SELECT 1", [overlapping])
    with pytest.raises(UserError, match="no such folder"):
        run_query(small_lake, "SELECT 1", [tmp_path / "nope"])


def test_every_table_reads_as_its_snapshot(small_lake: Lake):
    for name in ("silver.sales_lines", "silver.quarantine", "system.runs", "gold.fact_sales", "gold.dim_date"):
        query = f"SELECT * FROM {name} ORDER BY ALL"
        got = run_query(small_lake, query)
        assert [tuple(r.values()) for r in got.to_pylist()] == sql(small_lake, query), name
    described = run_query(small_lake, "DESCRIBE silver.sales_lines").to_pylist()
    assert [(r["column_name"], r["column_type"]) for r in described][3:7] == [
        ("order_date", "DATE"),
        ("order_ts", "TIMESTAMP WITH TIME ZONE"),
        ("sales", "DECIMAL(18,4)"),
        ("fraud_reasons", "VARCHAR[]"),
    ]


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("SELEC 1", 'syntax error at or near "SELEC"'),
        ("SELECT 1; SELECT 2", "exactly one SQL statement"),
        ("UPDATE EXTENSIONS", "UPDATE statements do not run here"),
        ("CREATE TABLE t AS SELECT 1", "CREATE statements do not run here"),
        ("SELECT * FROM gold.nope", "Table with name nope does not exist"),
    ],
)
def test_a_bad_statement_is_one_line(small_lake: Lake, statement: str, message: str):
    with pytest.raises(UserError, match=message) as refused:
        run_query(small_lake, statement)
    assert "\n" not in str(refused.value)
