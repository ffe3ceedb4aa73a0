"""The package as a user gets it: the wheel built from this checkout, ``pip install``-ed into
a fresh virtual environment (dependencies from the package index pip is configured with,
through pip's cache), then ``saleslake demo`` run from a folder outside the checkout so that
nothing can come from the source tree. Slow: the install alone takes a minute or more."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from helpers import ROOT
from saleslake.sample import catalog

ROWS = 10_000
# Every file the package reads at run time besides its modules (pyproject's package-data).
RUNTIME_FILES = (
    "saleslake/py.typed",
    "saleslake/gold/dbt/dbt_project.yml",
    "saleslake/gold/dbt/models/marts/fact_sales.sql",
    "saleslake/gold/dbt/macros/scd2.sql",
    "saleslake/gold/dbt/tests/generic/scd2.sql",
    "saleslake/serve/dashboard/app.py",
    *(f"saleslake/sample/data/{name}.toml" for name in catalog.NAMES),
)
GOLD_TABLES = ("fact_sales", "dim_customer", "dim_product", "dim_geography", "dim_date", "dim_store", "agg_sales_daily")
DEADLINE = 3600  # seconds per command: a hang fails the test instead of blocking the suite


def _run(cmd: list[str | Path], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=DEADLINE)
    assert done.returncode == 0, f"{cmd[:3]} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _user_env() -> dict[str, str]:
    """This process's environment (pip's index and cache settings included) without what
    would point the child at this checkout or this test run's settings."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("SALESLAKE_")}


def _build_wheel(tmp: Path, env: dict[str, str]) -> Path:
    """The wheel of the checkout's pyproject, README and src only (a copy, so no stale
    build/ or egg-info of a developer's tree can end up in it)."""
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp / "dist", source], tmp, env)
    (wheel,) = (tmp / "dist").glob("saleslake-*.whl")
    return wheel


def test_the_wheel_installs_in_a_fresh_venv_and_runs_the_demo(tmp_path: Path) -> None:
    assert not tmp_path.is_relative_to(ROOT)
    env = _user_env()
    wheel = _build_wheel(tmp_path, env)
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(RUNTIME_FILES) <= names
    assert {n.split("/")[0] for n in names} == {"saleslake", wheel.name.split("-py3")[0] + ".dist-info"}
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], tmp_path, env)
    _run([venv / "bin/python", "-m", "pip", "install", "-q", wheel], tmp_path, env)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run([venv / "bin/python", "-c", "import saleslake; print(saleslake.__file__)"], elsewhere, env)
    assert Path(where.strip()).is_relative_to(venv)

    cli = venv / "bin/saleslake"
    home = tmp_path / "lake"
    _run([cli, "demo", "--rows", ROWS, "--home", home], elsewhere, env)

    def one(sql: str) -> dict:
        (row,) = json.loads(_run([cli, "query", sql, "--format", "json", "--home", home], elsewhere, env))
        return row

    silver = one("SELECT count(*) AS lines, sum(sales) AS sales FROM silver.sales_lines")
    gold = one("SELECT count(*) AS lines, sum(sales) AS sales FROM gold.fact_sales")
    quarantined = one("SELECT count(*) AS n FROM silver.quarantine")["n"]
    assert gold == silver and ROWS * 0.9 < silver["lines"] < ROWS and quarantined > 0
    counts = one("SELECT " + ", ".join(f"(SELECT count(*) FROM gold.{t}) AS {t}" for t in GOLD_TABLES))
    assert all(n > 0 for n in counts.values()), counts
    shipped = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages" / "saleslake"
    assert not (shipped / "gold" / "dbt" / "target").exists()  # dbt writes under the lake, not the package
