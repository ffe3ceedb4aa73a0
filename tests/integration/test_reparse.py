"""Issue 14.4 as a user meets it: a file landed with a wrong --decimal is quarantined whole
and blocks gold; landing it again does nothing; `ingest csv --reparse` with the right
option corrects it once, through gold."""

from __future__ import annotations

from decimal import Decimal

from typer.testing import CliRunner

from helpers import HEADER, line, sql, write_csv
from saleslake import api
from saleslake.cli import app
from saleslake.lake import Lake


def test_wrong_decimal_then_reparse_publishes_gold_once(tmp_path, settings):
    rows = [line(row_id=str(i), order_id=f"O-{i}", sales=f"{i}.25") for i in range(1, 20)]
    export = write_csv(tmp_path / "exports" / "eu" / "2021-01-15.csv", HEADER + "\n" + "\n".join(rows) + "\n")
    home = ["--home", str(settings.home)]
    runner = CliRunner()

    def cli(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, [*args, *home])
        assert result.exit_code == code, result.output
        assert "Traceback" not in result.output
        return result.output

    cli("ingest", "csv", str(export), "--decimal", ",")
    assert "quality gate: 19 of 19 rows" in cli("run", code=3)
    again = cli("ingest", "csv", str(export), "--decimal", ".")  # content-addressed: nothing happens
    assert "landed 0 file(s)" in again and "1 already landed" in again

    assert "1 file(s) to parse again" in cli("ingest", "csv", str(export), "--decimal", ".", "--reparse")
    output = cli("run")
    assert "read 19 rows → 19 valid, 0 quarantined" in output and "gold published" in output
    lake = Lake(settings.home)
    total = sum(Decimal(f"{i}.25") for i in range(1, 20))
    assert sql(lake, "SELECT count(*), sum(sales) FROM silver.sales_lines") == [(19, total)]
    assert sql(lake, "SELECT count(*) FROM silver.quarantine") == [(0,)]
    facts = api.query("SELECT count(*) AS n, sum(sales) AS s FROM gold.fact_sales", settings=settings).to_pylist()
    assert facts == [{"n": 19, "s": total}]
    for run in api.status(settings=settings):  # every run's accounting still adds up
        for stage in run["stages"].values():
            if stage["rows_read"] is not None:
                assert stage["rows_read"] == stage["rows_valid"] + stage["rows_quarantined"] + stage["rows_duplicate"]

    # the same reparse again changes nothing, and neither does the run after it
    assert "0 file(s) to parse again" in cli("ingest", "csv", str(export), "--decimal", ".", "--reparse")
    assert "gold is up to date" in cli("run")
    assert sql(lake, "SELECT count(*), sum(sales) FROM silver.sales_lines") == [(19, total)]
    assert "--reparse" in cli("ingest", "csv", "--help")

    # a wrong reparse (month-first: no 15th month) takes every line out of silver and gold,
    # and the right one brings them back: gold follows, incrementally
    cli("ingest", "csv", str(export), "--decimal", ".", "--date-format", "%m-%d-%Y", "--reparse")
    assert "gold published" in cli("run", "--max-quarantine-share", "1")
    assert sql(lake, "SELECT count(*) FROM silver.sales_lines") == [(0,)]
    assert sql(lake, "SELECT count(*) FROM silver.quarantine") == [(19,)]
    assert api.query("SELECT count(*) AS n FROM gold.fact_sales", settings=settings).to_pylist() == [{"n": 0}]
    cli("ingest", "csv", str(export), "--decimal", ".", "--date-format", "%d-%m-%Y", "--reparse")
    assert "gold published" in cli("run")
    assert sql(lake, "SELECT count(*) FROM silver.quarantine") == [(0,)]
    facts = api.query("SELECT count(*) AS n, sum(sales) AS s FROM gold.fact_sales", settings=settings).to_pylist()
    assert facts == [{"n": 19, "s": total}]
