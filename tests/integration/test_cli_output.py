"""What people read fits an 80-column terminal and a pipe: no line longer than the
terminal, and no number or id cut to an ellipsis ("20,0…"); text folds instead."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from helpers import build_gold_lake, sql
from saleslake import api
from saleslake.lake import Lake

CLI = [sys.executable, "-m", "saleslake.cli"]


@pytest.fixture(scope="module")
def lake_home(tmp_path_factory) -> Path:
    return build_gold_lake(tmp_path_factory.mktemp("output"))


def saleslake(home: Path, *args: str, columns: int = 80) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALESLAKE_")}
    env["COLUMNS"] = str(columns)
    done = subprocess.run(
        [*CLI, *args, "--home", str(home)], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("columns", [80, 60])
def test_status_fits_the_terminal_and_shows_every_count_whole(lake_home, columns):
    text = saleslake(lake_home, "status", columns=columns)
    assert max(len(line) for line in text.splitlines()) <= columns, text
    assert "…" not in text, text
    [run] = [r for r in api.status(settings=api.settings(home=lake_home)) if r["command"] == "run"]
    assert run["run_id"] in text  # the id whole
    for counts in run["stages"].values():
        for key in ("rows_read", "rows_valid", "rows_quarantined", "rows_duplicate"):
            assert f"{counts[key]:,}" in text
    for source in api.freshness(api.settings(home=lake_home)):
        assert source["source_system"] in text and f"{source['silver_lines']:,}" in text


def test_query_and_quarantine_fold_text_and_keep_numbers_whole(lake_home):
    total = sql(Lake(lake_home), "SELECT sum(sales) FROM gold.fact_sales")[0][0]
    text = saleslake(lake_home, "query", "SELECT region, sum(sales) AS sales FROM gold.agg_sales_daily GROUP BY 1")
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text, text
    cells = [line.split("│")[-2].strip() for line in text.splitlines() if line.count("│") == 3]
    assert sum(Decimal(c) for c in cells if c[:1].isdigit()) == total  # every amount whole
    text = saleslake(lake_home, "quarantine", "--limit", "3")
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text, text
