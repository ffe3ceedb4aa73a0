"""kill -9 at random moments of `saleslake run`, then `run` again: the result equals an
uninterrupted run, row for row."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from saleslake import api

# Small chunks: many Delta commits, so kills land between and inside them.
ENV = {"SALESLAKE_CSV__CHUNK_BYTES": str(1_500_000), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}

FINGERPRINTS = {
    "silver.sales_lines": "line_key, row_hash, source_position, landed_seq, batch_id, tax_amount, dq_score, "
    "is_suspected_fraud, order_month",
    "silver.quarantine": "quarantine_key, reasons, source_position, landed_seq, batch_id, raw_line",
    "gold.fact_sales": "line_key, customer_sk, product_sk, geography_sk, order_date_key, net_sales, tax_amount",
    "gold.dim_customer": "customer_sk, customer_id, segment, valid_from, valid_to, version",
    "gold.dim_product": "product_sk, product_id, product_name, valid_from, valid_to, version",
    "gold.agg_sales_daily": "date_key, region, category, orders, lines, sales",
}


def run_cli(home: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALESLAKE_")} | ENV
    return subprocess.Popen(
        [sys.executable, "-m", "saleslake.cli", *args, "--home", str(home)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def fingerprint(home: Path) -> dict[str, tuple]:
    settings = api.settings(home=home)
    prints = {}
    for table, columns in FINGERPRINTS.items():
        row = api.query(f"SELECT count(*) AS n, sum(hash({columns})) AS h FROM {table}", settings).to_pylist()[0]
        prints[table] = (row["n"], row["h"])
    return prints


def prepare(root: Path, name: str) -> Path:
    home = root / name
    proc = run_cli(home, "ingest", "csv", str(root / "exports"))
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    return home


def test_kill_dash_nine_anywhere_then_rerun_equals_clean_run(tmp_path: Path):
    api.generate_csv(tmp_path / "exports", rows=60_000, error_rate=0.03, seed=11)
    clean = prepare(tmp_path, "clean")
    started = time.monotonic()
    proc = run_cli(clean, "run")
    assert proc.wait(timeout=600) == 0, proc.stderr.read()
    clean_seconds = time.monotonic() - started

    crashy = prepare(tmp_path, "crashy")
    rng = random.Random(20261122)
    kills = 0
    for _ in range(6):
        proc = run_cli(crashy, "run")
        time.sleep(rng.uniform(0.5, clean_seconds * 0.9))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
    assert kills >= 3, "the runs finished before they could be killed: make the data larger"
    proc = run_cli(crashy, "run")
    assert proc.wait(timeout=600) == 0, proc.stderr.read()

    assert fingerprint(crashy) == fingerprint(clean)
    statuses = [r["status"] for r in api.status(settings=api.settings(home=crashy))]
    assert statuses[0] == "succeeded" and "interrupted" in statuses
