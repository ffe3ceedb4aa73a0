"""End to end on generated exports: silver matches the generator's exact accounting."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest

from saleslake import api


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    summary = api.generate_csv(root / "exports", rows=40_000, error_rate=0.03, seed=7)
    settings = api.settings(home=root / "lake")
    landed = api.ingest_csv([root / "exports"], settings=settings)
    assert not landed.errors
    result = api.run(settings=settings)
    return summary, settings, result, root


def q(settings, query):
    return [tuple(r.values()) for r in api.query(query, settings).to_pylist()]


def test_row_accounting_matches_the_generator(generated):
    summary, _settings, result, _ = generated
    silver = result.stages["silver"]
    assert silver.rows_read == summary.rows_written
    assert silver.rows_quarantined == summary.defective_rows
    assert silver.rows_duplicate == summary.exact_duplicates
    assert silver.rows_corrected == summary.corrections
    assert silver.rows_valid == summary.valid_unique_lines + summary.corrections
    assert silver.balanced


def test_silver_holds_the_latest_version_of_each_line(generated):
    summary, settings, _, _ = generated
    count, total, outliers = q(
        settings, "SELECT count(*), sum(sales), count(*) FILTER (WHERE is_outlier) FROM silver.sales_lines"
    )[0]
    assert count == summary.valid_unique_lines
    assert total == Decimal(summary.expected_silver_sales)
    assert outliers == summary.outliers


def test_quarantine_reasons_match_the_planted_defects(generated):
    summary, settings, _, _ = generated
    got = Counter()
    for (reasons,) in q(settings, "SELECT reasons FROM silver.quarantine"):
        got.update(reasons)
    assert dict(got) == summary.defects_by_reason


def test_every_dialect_was_detected(generated):
    summary, settings, _, _ = generated
    formats = dict(q(settings, "SELECT source, any_value(date_format) FROM system.bronze_manifest GROUP BY 1"))
    for region, dialect in summary.dialects.items():
        assert formats[region] == dialect["date_format"], region
    decimals = dict(q(settings, "SELECT source, any_value(decimal) FROM system.bronze_manifest GROUP BY 1"))
    assert decimals["central"] == "," and decimals["east"] == "."


def test_gold_reconciles_and_scd2_has_history(generated):
    _, settings, _, _ = generated
    assert q(settings, "SELECT count(*), sum(sales) FROM gold.fact_sales") == q(
        settings, "SELECT count(*), sum(sales) FROM silver.sales_lines"
    )
    assert q(settings, "SELECT count(DISTINCT customer_id) FROM gold.dim_customer WHERE version > 1")[0][0] > 0
    assert q(settings, "SELECT sum(lines) FROM gold.agg_sales_daily") == q(
        settings, "SELECT count(*) FROM gold.fact_sales"
    )


def test_reingest_and_rerun_change_nothing(generated):
    _, settings, _, root = generated
    before = q(settings, "SELECT count(*), sum(sales) FROM silver.sales_lines") + q(
        settings, "SELECT count(*) FROM silver.quarantine"
    )
    landed = api.ingest_csv([root / "exports"], settings=settings)
    assert landed.landed == [] and len(landed.already_landed) > 0
    result = api.run(settings=settings)
    assert result.stages["silver"].rows_read == 0
    after = q(settings, "SELECT count(*), sum(sales) FROM silver.sales_lines") + q(
        settings, "SELECT count(*) FROM silver.quarantine"
    )
    assert before == after
