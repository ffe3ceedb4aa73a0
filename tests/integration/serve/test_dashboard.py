"""The Streamlit dashboard through Streamlit's AppTest (the real script, headless): the
numbers it shows equal SQL over the same lake (``api.query``), with and without filters.

Builds one small lake with gold (dbt), hence ``integration``.
"""

from __future__ import annotations

import os
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from helpers import build_gold_lake
from saleslake import api
from saleslake.lake import Lake
from saleslake.serve.dashboard import data
from saleslake.serve.dashboard.formatting import money, percent
from saleslake.serve.dashboard.server import APP

TIMEOUT = 180  # seconds per script run: generous, the machine is shared


@pytest.fixture(scope="module")
def lake_home(tmp_path_factory) -> Path:
    return build_gold_lake(tmp_path_factory.mktemp("dashboard"))


@pytest.fixture
def app_env(monkeypatch, tmp_path):
    """A clean environment: no SALESLAKE_* from the developer, no saleslake.toml."""
    for name in list(os.environ):
        if name.startswith("SALESLAKE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)

    def at_home(home: Path) -> AppTest:
        monkeypatch.setenv("SALESLAKE_HOME", str(home))
        at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
        at.run()
        assert not at.exception, [e.message for e in at.exception]
        return at

    return at_home


def q(home: Path, sql: str) -> tuple:
    return tuple(api.query(sql, api.settings(home=home)).to_pylist()[0].values())


def number(text: str) -> Decimal:
    """'$1,234.50' → 1234.50, '12.34%' → 12.34, '1,256' → 1256."""
    return Decimal(text.replace("$", "").replace(",", "").replace("%", "").strip())


def cents(value) -> Decimal:
    return Decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def shown_kpis(at: AppTest) -> dict[str, Decimal]:
    metrics = {m.label: m.value for m in at.metric}
    names = ("Revenue", "Orders", "Average order value", "Margin", "Tax collected", "Suspected fraud")
    return {name: number(metrics[name]) for name in names}


def expected_kpis(home: Path, join: str = "", where: str = "true") -> dict[str, Decimal]:
    """The KPI definitions of docs/dashboard.md, written straight against gold."""
    revenue, orders, profit, tax, fraud, lines = q(
        home,
        f"""
        SELECT sum(f.net_sales), count(DISTINCT (f.source_system, f.order_id)), sum(f.profit), sum(f.tax_amount),
               count(*) FILTER (WHERE f.is_suspected_fraud), count(*)
        FROM gold.fact_sales AS f {join} WHERE {where}""",
    )
    return {
        "Revenue": cents(revenue),
        "Orders": Decimal(orders),
        "Average order value": cents(Decimal(revenue) / orders),
        "Margin": cents(Decimal(profit) / Decimal(revenue) * 100),
        "Tax collected": cents(tax),
        "Suspected fraud": cents(Decimal(fraud) / lines * 100),
    }


def test_kpis_equal_sql_over_the_same_lake(lake_home, app_env):
    at = app_env(lake_home)
    expected = expected_kpis(lake_home)
    assert shown_kpis(at) == expected
    assert expected["Tax collected"] > 0 and expected["Suspected fraud"] > 0 and expected["Margin"] != 0
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Revenue"] == money(expected["Revenue"])  # "$794,961.77": separators, cents, symbol


def test_region_filter_changes_kpis_to_the_filtered_sql(lake_home, app_env):
    at = app_env(lake_home)
    everything = shown_kpis(at)
    region = q(
        lake_home,
        """SELECT g.region FROM gold.fact_sales f JOIN gold.dim_geography g USING (geography_sk)
                             GROUP BY 1 ORDER BY sum(f.net_sales) DESC LIMIT 1""",
    )[0]
    at.multiselect(key="regions").set_value([region]).run()
    assert not at.exception
    filtered = shown_kpis(at)
    assert filtered == expected_kpis(
        lake_home, "JOIN gold.dim_geography AS g USING (geography_sk)", f"g.region = '{region}'"
    )
    assert filtered["Revenue"] < everything["Revenue"]


def test_date_range_and_category_filters_combine(lake_home, app_env):
    at = app_env(lake_home)
    first, last = q(
        lake_home,
        "SELECT min(d.date), max(d.date) FROM gold.fact_sales f JOIN gold.dim_date d ON d.date_key = f.order_date_key",
    )
    start = date.fromordinal(last.toordinal() - 3)
    assert first < start
    at.date_input(key="dates").set_value((start, last))
    at.multiselect(key="categories").set_value(["Technology", "Furniture"]).run()
    assert not at.exception
    expected = expected_kpis(
        lake_home,
        "JOIN gold.dim_date AS d ON d.date_key = f.order_date_key JOIN gold.dim_product AS p USING (product_sk)",
        f"d.date BETWEEN DATE '{start}' AND DATE '{last}' AND p.category IN ('Technology', 'Furniture')",
    )
    assert shown_kpis(at) == expected
    # the trends follow the filters too: the months add up to the filtered revenue
    months = next(df.value for df in at.dataframe if df.value.columns[0] == "month")
    assert months["revenue"].sum() == pytest.approx(float(expected["Revenue"]), abs=0.01)


def test_breakdowns_and_top_lists_equal_sql(lake_home, app_env):
    at = app_env(lake_home)
    tables = {df.value.columns[0]: df.value for df in at.dataframe}
    regions = dict(zip(tables["region"]["region"], tables["region"]["revenue"]))
    rows = api.query(
        "SELECT g.region, CAST(sum(f.net_sales) AS DOUBLE) AS revenue FROM gold.fact_sales f "
        "JOIN gold.dim_geography g USING (geography_sk) GROUP BY 1",
        api.settings(home=lake_home),
    )
    assert regions == pytest.approx({r["region"]: r["revenue"] for r in rows.to_pylist()})
    assert len(regions) >= 13
    assert tables["segment"]["orders"].sum() >= int(shown_kpis(at)["Orders"])  # an order may span segments
    top_id, top_revenue = q(
        lake_home,
        """
        SELECT p.product_id, sum(f.net_sales) FROM gold.fact_sales f JOIN gold.dim_product p USING (product_sk)
        GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1""",
    )
    products = tables["product_id"]
    assert (products.iloc[0]["product_id"], products.iloc[0]["revenue"]) == (top_id, pytest.approx(float(top_revenue)))
    assert len(products) == 10
    customers = tables["customer_id"]
    assert (
        customers.iloc[0]["customer_id"]
        == q(
            lake_home,
            """
        SELECT c.customer_id FROM gold.fact_sales f JOIN gold.dim_customer c USING (customer_sk)
        GROUP BY 1 ORDER BY sum(f.net_sales) DESC, 1 LIMIT 1""",
        )[0]
    )


def test_data_quality_and_pipeline_health_equal_the_lake(lake_home, app_env):
    at = app_env(lake_home)
    metrics = {m.label: m.value for m in at.metric}
    quarantined, reasons = q(lake_home, "SELECT count(*), sum(len(reasons)) FROM silver.quarantine")
    valid = q(lake_home, "SELECT count(*) FROM gold.fact_sales")[0]
    assert quarantined > 0
    assert number(metrics["Quarantined rows"]) == quarantined
    assert number(metrics["Quarantine share"]) == cents(Decimal(quarantined) / (quarantined + valid) * 100)
    assert Decimal(metrics["Average data-quality score"]) == Decimal(
        str(q(lake_home, "SELECT avg(dq_score) FROM gold.fact_sales")[0])
    ).quantize(Decimal("0.1"), ROUND_HALF_UP)
    tables = {df.value.columns[0]: df.value for df in at.dataframe}
    assert tables["reason"]["rows"].sum() == reasons
    freshness = tables["source"]
    assert sorted(freshness["source"]) == [r["source_system"] for r in api.freshness(api.settings(home=lake_home))]
    assert freshness["silver lines"].sum() == valid
    runs = tables["run"]
    assert runs.iloc[0]["status"] == "succeeded" and runs.iloc[0]["gold lines"] == valid
    assert [s.value for s in at.success][-1].startswith("Healthy")


def test_kpi_helpers_match_the_page_format(lake_home):
    con = data.open_reader(Lake(lake_home))
    try:
        k = data.kpis(con, data.Filters())
    finally:
        con.close()
    assert money(Decimal("-1234.005")) == "-$1,234.01" and percent(Decimal("0.12345")) == "12.35%"
    assert k["aov"] == k["revenue"] / k["orders"] and k["margin"] == k["profit"] / k["revenue"]


def test_an_empty_lake_says_what_to_run(tmp_path, app_env):
    at = app_env(tmp_path / "nothing-here")
    assert not at.metric
    assert "No gold data" in at.info[0].value
    assert "saleslake demo --home" in at.code[0].value and "saleslake run --home" in at.code[0].value


def test_a_lake_without_gold_yet_shows_its_runs(tmp_path, app_env):
    api.generate_csv(tmp_path / "exports", rows=200, seed=3)
    home = tmp_path / "lake"
    api.ingest_csv([tmp_path / "exports"], settings=api.settings(home=home))
    at = app_env(home)
    assert "No gold data" in at.info[0].value
    runs = at.dataframe[0].value
    assert list(runs["command"]) == ["ingest csv"] and list(runs["status"]) == ["succeeded"]


def test_renders_the_last_release_while_gold_is_rebuilt(lake_home, app_env):
    """A rebuild publishes a new release under the page's feet: every render in between
    shows one whole release (the same numbers), never an error; then the new release."""
    import subprocess
    import sys

    import streamlit as st

    expected = expected_kpis(lake_home)
    before = data.release_info(Lake(lake_home))["release_id"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALESLAKE_")}
    writer = subprocess.Popen(
        [sys.executable, "-m", "saleslake.cli", "rebuild", "gold", "--home", str(lake_home)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    renders = 0
    try:
        while writer.poll() is None or renders == 0:
            st.cache_data.clear()  # read the lake afresh each time, not the cached page
            assert shown_kpis(app_env(lake_home)) == expected
            renders += 1
    finally:
        output = writer.communicate(timeout=300)[0]
    assert writer.returncode == 0, output
    after = data.release_info(Lake(lake_home))["release_id"]
    assert after != before
    st.cache_data.clear()
    at = app_env(lake_home)
    assert f"gold release {after[:8]}" in at.caption[0].value and shown_kpis(at) == expected
