"""``saleslake demo``: generate sample exports, land them, run every stage, and measure
what came out. The CLI prints the result (:func:`saleslake.cli.demo`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from saleslake.config import Settings, TaxSettings
from saleslake.errors import PipelineError
from saleslake.lake import Lake
from saleslake.pipeline import batch
from saleslake.serve.query import run_query
from saleslake.sources.csv import CsvOverrides

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
GOLD_COUNTED = ("fact_sales", "dim_customer", "dim_product", "dim_geography", "dim_date", "agg_sales_daily")


@dataclass
class DemoResult:
    """What the demo did and what is in the lake afterwards."""

    lake: Lake
    samples: Path
    generated: dict  # the generator's summary (rows_written, files, ...)
    landed: int
    already_landed: int
    run_message: str
    rows: dict[str, int] = field(default_factory=dict)  # "layer table" -> rows
    revenue: dict = field(default_factory=dict)  # gross, net, profit, tax, dq, fraud_lines, customer_versions
    seconds: float = 0.0


def run_demo(settings: Settings, rows: int, progress: Callable[[int], None] | None = None) -> DemoResult:
    """Generate ``rows`` sample order lines (unless the same are there), land them, run
    silver and gold, and check that gold reconciles with silver (raises PipelineError if not)."""
    if settings.tax.flat_rate == 0 and not settings.tax.rates:
        settings = settings.model_copy(update={"tax": TaxSettings.model_validate(DEMO_TAX)})
    lake = Lake(settings.home, settings.storage)
    samples = lake.home / "samples" / "csv"
    started = time.perf_counter()
    generated = _generate(samples, rows, progress)
    landed = batch.ingest_csv(lake, settings, [samples], None, CsvOverrides(), None, 0.0, None, False)
    result = batch.run(
        lake,
        settings,
        "gold",
        settings.quality.max_quarantine_share,
        0.0,
        None,
        False,
        settings.postgres.publish_after_gold,
    )
    demo = DemoResult(lake, samples, generated, len(landed.landed), len(landed.already_landed), result.message)
    _measure(lake, demo)
    demo.seconds = time.perf_counter() - started
    return demo


def _generate(samples: Path, rows: int, progress: Callable[[int], None] | None) -> dict:
    """Generate the sample exports unless the same ones are already there; ``progress(n)``
    counts the rows ready, ``rows`` in all once this step is done (at once when reused)."""
    from saleslake.sample.csv_export import generate_csv

    summary_file = samples / "generation_summary.json"
    if summary_file.is_file():
        summary = json.loads(summary_file.read_text())
        if summary.get("rows_written", 0) >= rows and summary.get("requested_rows", rows) == rows:
            if progress is not None:
                progress(rows)
            return summary
    result = generate_csv(samples, rows=rows, progress=progress)
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else vars(result)
    summary["requested_rows"] = rows
    summary_file.write_text(json.dumps(summary, indent=2, default=str))
    return summary


def _one(lake: Lake, sql: str) -> tuple:
    return tuple(run_query(lake, sql).to_pylist()[0].values())


def _measure(lake: Lake, demo: DemoResult) -> None:
    silver_lines, silver_sales = _one(lake, "SELECT count(*), sum(sales) FROM silver.sales_lines")
    demo.rows["bronze system.bronze_manifest (files)"] = _one(lake, "SELECT count(*) FROM system.bronze_manifest")[0]
    demo.rows["silver silver.sales_lines"] = silver_lines
    demo.rows["silver silver.quarantine"] = _one(lake, "SELECT count(*) FROM silver.quarantine")[0]
    for name in GOLD_COUNTED:
        demo.rows[f"gold gold.{name}"] = _one(lake, f"SELECT count(*) FROM gold.{name}")[0]
    facts, gross, net, profit, tax, dq, fraud = _one(
        lake,
        "SELECT count(*), sum(sales), sum(net_sales), sum(profit), sum(tax_amount), round(avg(dq_score), 1), "
        "count(*) FILTER (WHERE is_suspected_fraud) FROM gold.fact_sales",
    )
    if facts != silver_lines or gross != silver_sales:
        raise PipelineError(f"gold does not reconcile with silver: {facts} facts, {silver_lines} silver lines")
    versions = _one(lake, "SELECT count(*) FILTER (WHERE version > 1) FROM gold.dim_customer")[0]
    demo.revenue = {
        "gross": gross,
        "net": net,
        "profit": profit,
        "tax": tax,
        "dq": dq,
        "fraud_lines": fraud,
        "customer_versions": versions,
        "facts": facts,
    }
