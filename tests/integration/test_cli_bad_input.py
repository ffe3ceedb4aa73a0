"""Bad input through the real CLI: one clear line on stderr, exit 1, nothing already landed lost."""

from __future__ import annotations

import csv
import hashlib
import io
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


# -- user mistakes: one line ----------------------------------------------------------------


def test_quarantine_as_csv_writes_reasons_as_json(gold_home: Path):
    proc = saleslake("quarantine", "--format", "csv", "--limit", "1000", home=gold_home)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    expected = sql(Lake(gold_home), "SELECT count(*) FROM silver.quarantine")[0][0]
    assert len(rows) == expected > 0
    assert all(json.loads(r["reasons"]) and isinstance(json.loads(r["reasons"]), list) for r in rows)


def test_a_delimiter_of_two_characters_is_one_line(tmp_path: Path):
    f = write_csv(tmp_path / "in" / "a.csv", HEADER + "\n" + line() + "\n")
    proc = saleslake("ingest", "csv", str(f), "--delimiter", ";;", home=tmp_path / "lake")
    assert proc.returncode == 1 and len(error_lines(proc)) == 1 and "--delimiter" in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("command", "variable"),
    [
        (["generate", "oltp"], "SALESLAKE_POSTGRES_PASSWORD_FILE"),
        (["ingest", "postgres"], "SALESLAKE_POSTGRES_READER_PASSWORD_FILE"),
        (["publish", "postgres"], "SALESLAKE_POSTGRES_WAREHOUSE_PASSWORD_FILE"),
    ],
)
@pytest.mark.parametrize(
    "dsn", ["postgresql://shop:s3cr3t-pw@127.0.0.1:1/shop", "host=127.0.0.1 port=1 dbname=shop password=s3cr3t-pw"]
)
def test_a_password_in_dsn_is_refused(tmp_path: Path, command: list[str], variable: str, dsn: str):
    proc = saleslake(*command, "--dsn", dsn, home=tmp_path / "lake")
    assert proc.returncode == 1, proc.stderr
    lines = error_lines(proc)
    assert len(lines) == 1 and variable in lines[0] and "password" in lines[0], proc.stderr
    assert "s3cr3t-pw" not in proc.stderr + proc.stdout


# -- a full disk: one line, and a rerun once there is room gives the clean lake -----------------


def saleslake_limited(*args: str, home: Path, file_size_limit: int) -> subprocess.CompletedProcess:
    """The CLI in a process whose files cannot grow beyond ``file_size_limit`` bytes
    (RLIMIT_FSIZE: the write that crosses it fails with EFBIG, as one on a full disk fails
    with ENOSPC; no root needed)."""
    limited = (
        "import resource, runpy, sys; "
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({file_size_limit}, {file_size_limit})); "
        "sys.argv = ['saleslake', *sys.argv[1:]]; runpy.run_module('saleslake.cli', run_name='__main__')"
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SALESLAKE_")}
    environment["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-c", limited, *args, "--home", str(home)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=home.parent,
        timeout=600,
    )


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("full-disk") / "exports"
    from saleslake import api

    api.generate_csv(folder, rows=20_000, regions=["emea"], seed=3)
    return folder


def landed(home: Path) -> list[tuple]:
    return sql(Lake(home), "SELECT original_name, object_id, size_bytes FROM system.bronze_manifest ORDER BY ALL")


def test_a_full_disk_while_landing_is_one_line_and_landing_again_completes(exports: Path, tmp_path: Path):
    limit = 64 * 1024
    assert max(f.stat().st_size for f in exports.rglob("*.csv")) > limit
    home = tmp_path / "lake"
    proc = saleslake_limited("ingest", "csv", str(exports), home=home, file_size_limit=limit)
    assert proc.returncode == 1, proc.stderr
    lines = error_lines(proc)
    assert len(lines) == 1 and "file-size limit" in lines[0] and str(home) in lines[0], proc.stderr
    assert list(home.rglob("*.partial")) == []  # no half file left taking room
    assert saleslake("ingest", "csv", str(exports), home=home).returncode == 0
    clean = tmp_path / "clean"
    assert saleslake("ingest", "csv", str(exports), home=clean).returncode == 0
    assert landed(home) == landed(clean) and len(landed(home)) == len(list(exports.rglob("*.csv")))


def test_a_full_disk_during_a_run_is_one_line_and_a_rerun_gives_the_clean_lake(exports: Path, tmp_path: Path):
    clean = tmp_path / "clean"
    assert saleslake("ingest", "csv", str(exports), home=clean).returncode == 0
    assert saleslake("run", home=clean).returncode == 0
    # a limit every file of the clean run stays under but the dbt warehouse (~MBs)
    others = [
        p.stat().st_size
        for p in clean.rglob("*")
        if p.is_file() and not p.name.startswith("warehouse.duckdb") and "bronze" not in p.relative_to(clean).parts
    ]
    gold_limit = max(others) + 256 * 1024
    assert gold_limit < (clean / "warehouse.duckdb").stat().st_size

    home = tmp_path / "lake"
    assert saleslake("ingest", "csv", str(exports), home=home).returncode == 0
    # 1. silver's Delta write fails (delta-rs)
    proc = saleslake_limited("run", home=home, file_size_limit=64 * 1024)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    ours = [text for text in error_lines(proc) if text.startswith("error:")]
    assert len(ours) == 1 and "file-size limit" in ours[0] and str(home) in ours[0], proc.stderr
    # delta-rs' writer threads may print a Rust panic report of their own before it (a known
    # object_store bug, apache/arrow-rs-object-store#810: "Already shut down"); nothing else
    rust = [text for text in error_lines(proc) if not text.startswith("error:")]
    assert all(t.startswith(("thread '", "Already shut down", "stack backtrace", "note: ")) for t in rust), rust
    # 2. silver commits, then the dbt warehouse cannot grow: one line naming the file
    proc = saleslake_limited("run", home=home, file_size_limit=gold_limit)
    assert proc.returncode == 1, proc.stderr
    lines = error_lines(proc)
    assert len(lines) == 1 and "file-size limit" in lines[0] and "warehouse.duckdb" in lines[0], proc.stderr
    # 3. room again: the same lake as a run that never failed
    assert saleslake("run", home=home).returncode == 0
    for statement in (
        "SELECT count(*), sum(sales), sum(tax_amount), count(DISTINCT line_key) FROM silver.sales_lines",
        "SELECT count(*), count(DISTINCT quarantine_key) FROM silver.quarantine",
        "SELECT count(*), sum(net_sales), sum(profit) FROM gold.fact_sales",
        "SELECT count(*), sum(sales) FROM gold.agg_sales_daily",
        "SELECT count(*) FROM gold.dim_customer",
    ):
        assert sql(Lake(home), statement) == sql(Lake(clean), statement), statement


def test_no_space_left_on_device_is_one_line(tmp_path: Path):
    out = tmp_path / "exports"
    (out / "emea").mkdir(parents=True)
    (out / "emea" / "emea_2021-01-01.csv").symlink_to("/dev/full")  # every write: ENOSPC
    proc = saleslake("generate", "csv", "--out", str(out), "--rows", "500", "--regions", "emea", home=tmp_path / "lake")
    assert proc.returncode == 1, proc.stderr
    lines = error_lines(proc)
    assert len(lines) == 1 and "no space left on device" in lines[0] and "MB free there" in lines[0], proc.stderr
