"""Bad input through the real CLI: one clear line on stderr, exit 1, nothing already landed lost."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from helpers import HEADER, build_gold_lake, line, sql, write_csv
from saleslake.lake import Lake

CLI = [sys.executable, "-m", "saleslake.cli"]


def saleslake(*args: str, home: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SALESLAKE_")}
    environment.update(env or {})
    environment["COLUMNS"] = "200"
    return subprocess.run(
        [*CLI, *args, "--home", str(home)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=home.parent,
        timeout=300,
    )


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [text for text in proc.stderr.splitlines() if text.strip()]


BAD_FILES = {
    "binary.csv": (b"\x00\x01\x02\x03garbage\xff\xfe" * 20, "binary data"),
    "empty.csv": (b"", "the file is empty"),
    "latin1.csv": ((HEADER + "\n" + line(name="Renée") + "\n").encode("cp1252"), "not valid UTF-8"),
    "nocols.csv": (b"Row ID,Order ID,Customer ID,Sales\n1,O-1,C-1,10\n", "missing required column(s)"),
    "page.csv": (b"<html><body>Export failed</body></html>\n", "not a sales CSV export"),
    "tabs.csv": ((HEADER + "\n" + line(row_id="2") + "\n").encode(), "check --delimiter"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_gives_one_line_and_keeps_what_was_landed(tmp_path: Path, name: str):
    home = tmp_path / "lake"
    good = write_csv(tmp_path / "in" / "good.csv", HEADER + "\n" + line() + "\n")
    assert saleslake("ingest", "csv", str(good), home=home).returncode == 0
    content, message = BAD_FILES[name]
    bad = tmp_path / "in2" / name
    bad.parent.mkdir()
    bad.write_bytes(content)
    extra = ["--delimiter", "\t"] if name == "tabs.csv" else []
    proc = saleslake("ingest", "csv", str(bad), *extra, home=home)
    assert proc.returncode == 1, proc.stderr
    lines = error_lines(proc)
    assert len(lines) == 1 and message in lines[0] and name in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    run = saleslake("run", home=home)
    assert run.returncode == 0, run.stderr
    assert sql(Lake(home), "SELECT count(*) FROM silver.sales_lines") == [(1,)]


def test_header_only_file_is_skipped_with_a_notice(tmp_path: Path):
    home = tmp_path / "lake"
    f = write_csv(tmp_path / "in" / "h.csv", HEADER + "\n")
    proc = saleslake("ingest", "csv", str(f), home=home)
    assert proc.returncode == 0 and "header only" in proc.stderr


def test_truncated_last_line_is_quarantined_not_fatal(tmp_path: Path):
    home = tmp_path / "lake"
    f = write_csv(tmp_path / "in" / "t.csv", HEADER + "\n" + line() + "\n" + line(row_id="2")[:40])
    assert saleslake("ingest", "csv", str(f), home=home).returncode == 0
    assert saleslake("run", "--until", "silver", home=home).returncode == 0
    lake = Lake(home)
    assert sql(lake, "SELECT count(*) FROM silver.sales_lines") == [(1,)]
    assert sql(lake, "SELECT reasons FROM silver.quarantine") == [(["malformed_row:missing_columns"],)]


def test_missing_path_and_bad_config_are_user_errors(tmp_path: Path):
    home = tmp_path / "lake"
    proc = saleslake("ingest", "csv", str(tmp_path / "nope"), home=home)
    assert proc.returncode == 1 and "no such file or folder" in proc.stderr and "Traceback" not in proc.stderr
    proc = saleslake("status", home=home, env={"SALESLAKE_QUALITY__MAX_QUARANTINE_SHARE": "lots"})
    assert proc.returncode == 1 and "quality.max_quarantine_share" in proc.stderr and len(error_lines(proc)) == 1
    toml = tmp_path / "bad.toml"
    toml.write_text("[quality\nmax = 1")
    proc = saleslake("status", home=home, env={"SALESLAKE_CONFIG": str(toml)})
    assert proc.returncode == 1 and "configuration" in proc.stderr and "Traceback" not in proc.stderr


def test_ambiguous_dates_ask_for_date_format(tmp_path: Path):
    home = tmp_path / "lake"
    f = write_csv(
        tmp_path / "us" / "a.csv", HEADER + "\n" + line(order_date="01/02/2021", ship_date="03/02/2021") + "\n"
    )
    proc = saleslake("ingest", "csv", str(f), home=home)
    assert proc.returncode == 1 and "--date-format" in proc.stderr
    proc = saleslake("ingest", "csv", str(f), "--date-format", "%m/%d/%Y", home=home)
    assert proc.returncode == 0, proc.stderr
    assert saleslake("run", "--until", "silver", home=home).returncode == 0
    assert [str(d) for (d,) in sql(Lake(home), "SELECT order_date FROM silver.sales_lines")] == ["2021-01-02"]


def test_usage_error_exits_2(tmp_path: Path):
    proc = saleslake("run", "--until", "platinum", home=tmp_path / "lake")
    assert proc.returncode == 2


def test_extra_columns_are_reported_and_kept_in_bronze(tmp_path: Path):
    home = tmp_path / "lake"
    f = write_csv(tmp_path / "in" / "x.csv", HEADER + ",Sales Rep\n" + line() + ",Bob\n")
    proc = saleslake("ingest", "csv", str(f), home=home)
    assert proc.returncode == 0 and "extra column(s) Sales Rep kept in bronze" in proc.stderr
    lake = Lake(home)
    [(uri,)] = sql(lake, "SELECT bronze_uri FROM system.bronze_manifest")
    assert (home / uri).read_text().endswith(",Bob\n")


# -- query is read-only, by construction --------------------------------------------------


def fingerprint(root: Path) -> dict[str, str]:
    """Every file under ``root`` with the sha256 of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


@pytest.fixture(scope="module")
def gold_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_gold_lake(tmp_path_factory.mktemp("read-only"))


def test_query_cannot_write_read_files_or_change_settings(gold_home: Path, tmp_path: Path):
    log = next((gold_home / "gold" / "fact_sales" / "_delta_log").glob("*.json"))
    outside = tmp_path / "outside"
    outside.mkdir()
    attacks = [
        f"EXPLAIN ANALYZE COPY (SELECT 'x') TO '{log}' (FORMAT csv)",
        f"COPY (SELECT 'x') TO '{log}' (FORMAT csv)",
        f"COPY gold.fact_sales TO '{outside / 'facts.parquet'}'",
        f"EXPORT DATABASE '{outside / 'export'}'",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SET enable_external_access = true",
        "RESET enable_external_access",
        f"ATTACH '{outside / 'x.duckdb'}' AS x",
        "INSTALL httpfs",
        "LOAD httpfs",
        "CREATE TABLE kept AS SELECT 1",
        "SELEC 1",
    ]
    before = fingerprint(gold_home)
    for attack in attacks:
        proc = saleslake("query", attack, home=gold_home)
        assert proc.returncode == 1, (attack, proc.stdout, proc.stderr)
        assert len(error_lines(proc)) == 1 and "Traceback" not in proc.stderr, (attack, proc.stderr)
    assert fingerprint(gold_home) == before
    assert list(outside.iterdir()) == []
    # the lake still reads, with the results of a plain reader of its snapshots
    lake = Lake(gold_home)
    for statement in (
        "SELECT count(*), sum(net_sales), sum(tax_amount) FROM gold.fact_sales",
        "SELECT region, round(sum(sales), 4) FROM gold.agg_sales_daily GROUP BY 1 ORDER BY 1",
        "SELECT count(*), sum(sales), count(DISTINCT order_id) FROM silver.sales_lines",
        "SELECT count(*) FROM silver.quarantine",
        "SELECT status, count(*) FROM system.runs GROUP BY 1 ORDER BY 1",
    ):
        proc = saleslake("query", statement, "--format", "json", home=gold_home)
        assert proc.returncode == 0, proc.stderr
        got = [tuple(row.values()) for row in json.loads(proc.stdout)]
        expected = [tuple(str(v) if isinstance(v, Decimal) else v for v in row) for row in sql(lake, statement)]
        assert got == expected, statement


def test_query_reads_local_files_only_under_an_allowed_folder(gold_home: Path, tmp_path: Path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "targets.csv").write_text("region,target\nCentral,100\n")
    read = f"SELECT target FROM read_csv('{inputs / 'targets.csv'}')"
    proc = saleslake("query", read, home=gold_home)
    assert proc.returncode == 1 and len(error_lines(proc)) == 1 and "--allow-files" in proc.stderr
    proc = saleslake("query", read, "--allow-files", str(inputs), "--format", "csv", home=gold_home)
    assert proc.returncode == 0 and proc.stdout.splitlines() == ['"target"', "100"], proc.stderr
    proc = saleslake(
        "query", read, "--format", "csv", home=gold_home, env={"SALESLAKE_QUERY__ALLOW_FILES": f'["{inputs}"]'}
    )
    assert proc.returncode == 0 and proc.stdout.splitlines()[1] == "100", proc.stderr
    proc = saleslake("query", "SELECT 1", "--allow-files", str(gold_home / "gold"), home=gold_home)
    assert proc.returncode == 1 and "overlaps the lake" in proc.stderr and len(error_lines(proc)) == 1
