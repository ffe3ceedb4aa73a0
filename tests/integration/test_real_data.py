"""End to end on the real public data in ../shared/data (facts from its README)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from helpers import SHARED_DATA
from saleslake import api


@pytest.fixture(scope="module")
def real_lake(tmp_path_factory, shared_data_dir):
    home = tmp_path_factory.mktemp("real") / "lake"
    settings = api.settings(home=home)
    landed = api.ingest_csv(
        [shared_data_dir / "global_superstore_regional", shared_data_dir / "superstore_us_2023"], settings=settings
    )
    assert not landed.errors and len(landed.landed) == 14
    result = api.run(settings=settings)
    assert result.status == "succeeded"
    return settings, result


@pytest.fixture(scope="module")
def shared_data_dir():
    assert SHARED_DATA.is_dir()
    return SHARED_DATA


def q(settings, query: str) -> list[tuple]:
    return [tuple(r.values()) for r in api.query(query, settings).to_pylist()]


def test_every_row_reaches_silver_with_exact_sums(real_lake):
    settings, result = real_lake
    silver = result.stages["silver"]
    assert (silver.rows_read, silver.rows_valid, silver.rows_quarantined, silver.rows_duplicate) == (61484, 61484, 0, 0)
    rows = dict(
        (s, (n, total))
        for s, n, total in q(settings, "SELECT source_system, count(*), sum(sales) FROM silver.sales_lines GROUP BY 1")
    )
    n, total = rows["csv:global_superstore_regional"]
    assert n == 51290 and total.quantize(Decimal("0.01")) == Decimal("12642501.91")
    assert rows["csv:superstore_us_2023"][0] == 10194


def test_global_superstore_known_facts(real_lake):
    settings, _ = real_lake
    src = "source_system = 'csv:global_superstore_regional'"
    assert q(
        settings,
        f"SELECT count(DISTINCT customer_id), count(DISTINCT product_id), count(DISTINCT line_id), "
        f"min(order_date)::VARCHAR, max(order_date)::VARCHAR, count(*) FILTER (WHERE is_outlier) "
        f"FROM silver.sales_lines WHERE {src}",
    ) == [(1590, 10292, 51290, "2011-01-01", "2014-12-31", 5)]
    # (Order ID, Product ID) is not a line key: 38 pairs repeat, and all their lines are kept
    assert q(
        settings,
        f"SELECT count(*) FROM (SELECT order_id, product_id FROM silver.sales_lines WHERE {src} "
        "GROUP BY ALL HAVING count(*) > 1)",
    ) == [(38,)]


def test_us_superstore_bom_ddmmyy_and_aliases(real_lake):
    settings, _ = real_lake
    src = "source_system = 'csv:superstore_us_2023'"
    assert q(
        settings,
        f"SELECT min(order_date)::VARCHAR, max(order_date)::VARCHAR, count(*) FILTER (WHERE country IS NULL), "
        f"count(*) FILTER (WHERE state IS NULL), count(*) FILTER (WHERE market IS NULL), "
        f"count(*) FILTER (WHERE shipping_cost IS NULL) FROM silver.sales_lines WHERE {src}",
    ) == [("2019-01-03", "2022-12-30", 0, 0, 10194, 10194)]
    # the first data row of the file: 03/01/19 is the 3rd of January 2019 (day-first, 2-digit year)
    assert q(
        settings,
        f"SELECT order_date::VARCHAR, ship_date::VARCHAR, postal_code FROM silver.sales_lines "
        f"WHERE {src} AND line_id = '1'",
    ) == [("2019-01-03", "2019-01-07", "77095")]


def test_gold_reconciles_and_resolves_every_key(real_lake):
    settings, _ = real_lake
    assert q(settings, "SELECT count(*), sum(sales) FROM gold.fact_sales") == q(
        settings, "SELECT count(*), sum(sales) FROM silver.sales_lines"
    )
    for dim, key in (
        ("dim_customer", "customer_sk"),
        ("dim_product", "product_sk"),
        ("dim_geography", "geography_sk"),
        ("dim_store", "store_sk"),
    ):
        assert q(
            settings,
            f"SELECT count(*) FROM gold.fact_sales f LEFT JOIN gold.{dim} d USING ({key}) "
            f"WHERE d.{key} IS NULL OR f.{key} IS NULL",
        ) == [(0,)]
    assert q(
        settings,
        "SELECT count(*) FROM gold.fact_sales f LEFT JOIN gold.dim_date d ON f.order_date_key = d.date_key "
        "WHERE d.date_key IS NULL",
    ) == [(0,)]


def test_scd2_history_of_products(real_lake):
    settings, _ = real_lake
    # 457 product IDs carry more than one (name, category, sub-category) over time
    changed = q(
        settings,
        "SELECT count(*) FROM (SELECT product_id FROM silver.sales_lines "
        "WHERE source_system = 'csv:global_superstore_regional' GROUP BY 1 "
        "HAVING count(DISTINCT (product_name, category, sub_category)) > 1)",
    )[0][0]
    assert changed == 457
    versioned = q(settings, "SELECT count(DISTINCT product_id) FROM gold.dim_product WHERE version > 1")[0][0]
    assert versioned >= 457
    assert q(
        settings,
        "SELECT count(*) FROM (SELECT product_id FROM gold.dim_product WHERE product_sk <> -1 "
        "GROUP BY 1 HAVING count(*) FILTER (WHERE is_current) <> 1)",
    ) == [(0,)]


def test_dim_date_covers_whole_years(real_lake):
    settings, _ = real_lake
    assert q(settings, "SELECT min(date)::VARCHAR, max(date)::VARCHAR FROM gold.dim_date WHERE date_key <> -1") == [
        ("2011-01-01", "2023-12-31")
    ]


def test_rerun_changes_nothing(real_lake):
    settings, _ = real_lake
    before = q(settings, "SELECT count(*), sum(sales), sum(customer_sk) FROM gold.fact_sales")
    result = api.run(settings=settings)
    assert result.stages["silver"].rows_read == 0 and result.message == "gold is up to date"
    assert q(settings, "SELECT count(*), sum(sales), sum(customer_sk) FROM gold.fact_sales") == before
