"""``saleslake demo``: generate sample exports, run every stage, show what came out."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from saleslake import api
from saleslake.config import Settings
from saleslake.lake import Lake


def _generate(samples: Path, rows: int, err: Console) -> dict:
    """Generate the sample exports unless the same ones are already there."""
    summary_file = samples / "generation_summary.json"
    if summary_file.is_file():
        summary = json.loads(summary_file.read_text())
        if summary.get("rows_written", 0) >= rows and summary.get("requested_rows", rows) == rows:
            return summary
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as bar:
        task = bar.add_task("generating sample exports", total=rows)
        result = api.generate_csv(samples, rows=rows, progress=lambda n: bar.update(task, advance=n))
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else vars(result)
    summary["requested_rows"] = rows
    summary_file.write_text(json.dumps(summary, indent=2, default=str))
    return summary


# Sample VAT / sales-tax rates so the demo shows tax; used only when no tax is configured.
DEMO_TAX = {
    "flat_rate": "0.10",
    "rates": {
        "United States": "0.07",
        "Canada": "0.05",
        "Germany": "0.19",
        "France": "0.20",
        "United Kingdom": "0.20",
        "Italy": "0.22",
        "Spain": "0.21",
        "Australia": "0.10",
        "China": "0.13",
        "India": "0.18",
        "Japan": "0.10",
        "Brazil": "0.17",
        "Mexico": "0.16",
    },
}


def _command() -> str:
    """How the user reaches this program from their shell (``.venv/bin/saleslake`` or ``saleslake``)."""
    exe = Path(sys.argv[0])
    if exe.name == "saleslake" and not shutil.which("saleslake"):
        try:
            return str(exe.resolve().relative_to(Path.cwd()))
        except ValueError:
            return str(exe)
    return "saleslake"


def _one(settings: Settings, sql: str) -> tuple:
    return tuple(api.query(sql, settings).to_pylist()[0].values())


def run_demo(settings: Settings, rows: int, out: Console, err: Console) -> None:
    if settings.tax.flat_rate == 0 and not settings.tax.rates:
        settings = settings.model_copy(update={"tax": type(settings.tax)(**DEMO_TAX)})
    lake = Lake(settings.home)
    samples = lake.home / "samples" / "csv"
    started = time.perf_counter()
    out.print(f"[bold]saleslake demo[/] — lake at {lake.home}")
    generated = _generate(samples, rows, err)
    out.print(
        f"1. generated {generated['rows_written']:,} order lines in {generated['files']:,} regional daily exports under {samples}"
    )
    landed = api.ingest_csv([samples], settings=settings)
    out.print(f"2. landed {len(landed.landed):,} new file(s) in bronze ({len(landed.already_landed):,} already there)")
    result = api.run(settings=settings)
    out.print(f"3. ran silver and gold: {result.message}")

    silver_lines, silver_sales = _one(settings, "SELECT count(*), sum(sales) FROM silver.sales_lines")
    quarantined = _one(settings, "SELECT count(*) FROM silver.quarantine")[0]
    facts, revenue, net, profit, tax, dq, fraud = _one(
        settings,
        "SELECT count(*), sum(sales), sum(net_sales), sum(profit), sum(tax_amount), round(avg(dq_score), 1), "
        "count(*) FILTER (WHERE is_suspected_fraud) FROM gold.fact_sales",
    )
    customers_versions = _one(settings, "SELECT count(*) FILTER (WHERE version > 1) FROM gold.dim_customer")[0]

    table = Table(title="what is in the lake now", show_header=True)
    table.add_column("layer")
    table.add_column("table")
    table.add_column("rows", justify="right")
    table.add_row(
        "bronze",
        "system.bronze_manifest (files)",
        f"{_one(settings, 'SELECT count(*) FROM system.bronze_manifest')[0]:,}",
    )
    table.add_row("silver", "silver.sales_lines", f"{silver_lines:,}")
    table.add_row("silver", "silver.quarantine", f"{quarantined:,}")
    for name in ("fact_sales", "dim_customer", "dim_product", "dim_geography", "dim_date", "agg_sales_daily"):
        table.add_row("gold", f"gold.{name}", f"{_one(settings, f'SELECT count(*) FROM gold.{name}')[0]:,}")
    out.print(table)
    out.print(
        f"revenue {net:,.2f} (net of discounts; gross sales {revenue:,.2f}), profit {profit:,.2f}, tax {tax:,.2f}; "
        f"{fraud:,} suspected-fraud lines; average data-quality score {dq}; "
        f"{customers_versions:,} customer versions beyond the first (SCD2)"
    )
    assert facts == silver_lines and revenue == silver_sales, "gold does not reconcile with silver"
    out.print(f"fact_sales reconciles with silver: {facts:,} lines, sales {revenue:,.4f}")
    out.print(f"done in {time.perf_counter() - started:.1f} s\n")
    home = f" --home {lake.home}" if lake.home != Path("lakehouse").absolute() else ""
    cli = _command()
    out.print("[bold]Try next:[/]")
    out.print(f"  {cli} status{home}")
    out.print(f"  {cli} quarantine --limit 5{home}")
    out.print(
        f'  {cli} query "SELECT region, round(sum(sales), 2) AS sales FROM gold.agg_sales_daily GROUP BY 1 ORDER BY 2 DESC"{home}'
    )
    out.print(
        f'  {cli} query "SELECT customer_id, segment, valid_from, valid_to, version FROM gold.dim_customer WHERE customer_id IN (SELECT customer_id FROM gold.dim_customer WHERE version = 2 LIMIT 1)"{home}'
    )
    out.print(
        f"  {cli} dashboard{home}    # revenue, trends, data quality and pipeline health on http://127.0.0.1:8501"
    )
    out.print(f"  {cli} doctor{home}       # preflight checks")
    out.print(
        f"  files: bronze {lake.bronze}, silver {lake.home / 'silver'}, gold Delta tables {lake.gold}, warehouse {lake.warehouse}"
    )
