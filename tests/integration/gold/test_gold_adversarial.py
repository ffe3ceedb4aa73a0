"""A row silver accepts must never fail gold (issue 14.3).

Table-driven: adversarial CSV lines at the edges of what silver validation accepts go
through the whole pipeline (land → silver → dbt build and tests → Delta publish →
PostgreSQL warehouse); gold must build, publish and reconcile with silver. The lines just
beyond those edges must be quarantined with their reasons instead of reaching gold.
"""

from __future__ import annotations

import csv
import hashlib
import io
from decimal import Decimal
from pathlib import Path

import psycopg

from helpers import HEADER, sql
from saleslake import api
from saleslake.lake import Lake

MAX_MONEY = "99999999999999.9999"  # the largest DECIMAL(18,4)
NOISE = "".join(hashlib.sha256(str(i).encode()).hexdigest() for i in range(400))  # 25,600 characters
FIELDS = [name.strip() for name in HEADER.split(",")]
DEFAULTS = {
    "Order Date": "15-01-2021",
    "Ship Date": "17-01-2021",
    "Ship Mode": "Standard Class",
    "Customer ID": "C-1",
    "Customer Name": "Ann Lee",
    "Segment": "Consumer",
    "City": "Berlin",
    "State": "Berlin",
    "Country": "Germany",
    "Postal Code": "10115",
    "Market": "EU",
    "Region": "Central",
    "Product ID": "P-1",
    "Category": "Furniture",
    "Sub-Category": "Chairs",
    "Product Name": "Chair",
    "Sales": "100.50",
    "Quantity": "2",
    "Discount": "0.1",
    "Profit": "10.5",
    "Shipping Cost": "12.5",
    "Order Priority": "High",
}
NO_GEOGRAPHY = {k: "" for k in ("City", "State", "Country", "Postal Code", "Market", "Region")}

# (case, fields): silver accepts each; gold must hold each as one fact.
ACCEPTED = [
    ("first-plausible-day", {"Order Date": "01-01-1900", "Ship Date": "01-01-1900", "Customer ID": "C-FIRST"}),
    # a customer first seen on the last plausible day: its SCD2 version starts there
    ("last-plausible-day", {"Order Date": "31-12-2100", "Ship Date": "31-12-2100", "Customer ID": "C-LAST"}),
    ("shipped-two-centuries-later", {"Order Date": "01-01-1900", "Ship Date": "31-12-2100"}),
    ("unshipped", {"Ship Date": "", "Ship Mode": ""}),
    # three maximal amounts on one day, region and category: their sum exceeds DECIMAL(18,4)
    ("max-sales-1", {"Sales": MAX_MONEY, "Discount": "0", "Quantity": "1"}),
    ("max-sales-2", {"Sales": MAX_MONEY, "Discount": "0.5", "Quantity": "3"}),
    ("max-sales-full-discount", {"Sales": MAX_MONEY, "Discount": "1", "Quantity": "1"}),  # net 0
    ("tiny-sales-rounded-to-net-0", {"Sales": "0.0001", "Discount": "0.9999", "Quantity": "1", "Profit": "0.0001"}),
    ("max-profit", {"Profit": MAX_MONEY}),
    ("min-profit", {"Profit": "-" + MAX_MONEY}),
    # quantities at quality.max_quantity, summed per day, region and category
    ("max-quantity-1", {"Quantity": "1000000000"}),
    ("max-quantity-2", {"Quantity": "1000000000"}),
    ("max-quantity-3", {"Quantity": "1000000000", "Sales": "0.0001"}),
    ("long-text", {"Product Name": "Long " * 8_000, "Customer Name": "N" * 20_000, "City": "C" * 5_000}),
    # the daily aggregate's grain is the warehouse table's primary key (a B-tree entry
    # holds 2,704 bytes): the longest region and category silver takes, not compressible
    ("long-region-and-category", {"Region": NOISE[:1_000], "Category": NOISE[1_000:2_000], "Product ID": "P-LONG"}),
    ("long-multibyte-region", {"Region": "€" * 333, "Category": "ü" * 500, "Product ID": "P-LONG-2"}),
    ("odd-text", {"Product Name": 'Café ☕ "quoted", semi; pipe| tab\t\\N', "Segment": "Ünïcödé", "City": "Zürich"}),
    ("no-region", {"Region": ""}),
    ("no-category", {"Category": "", "Sub-Category": "", "Product ID": "P-NO-CAT"}),
    ("no-geography", NO_GEOGRAPHY),
    ("no-optional-fields", {"Market": "", "Shipping Cost": "", "Order Priority": "", "Profit": ""}),
    ("customer-without-attributes", {"Customer ID": "C-BARE", "Customer Name": "", "Segment": ""}),
    # one customer in three segments on one day, and again on the next days
    ("segment-a", {"Customer ID": "C-FLIP", "Segment": "A"}),
    ("segment-b", {"Customer ID": "C-FLIP", "Segment": "B"}),
    ("segment-c", {"Customer ID": "C-FLIP", "Segment": "C", "Order Date": "16-01-2021", "Ship Date": "16-01-2021"}),
    (
        "segment-a-again",
        {"Customer ID": "C-FLIP", "Segment": "A", "Order Date": "17-01-2021", "Ship Date": "17-01-2021"},
    ),
    ("ids-differing-in-case", {"Customer ID": "c-1", "Product ID": "p-1"}),
    ("ids-with-blanks", {"Customer ID": "  C-1  ", "Product ID": " P-1 "}),
    ("control-characters", {"Product Name": "unit\x1f bell\x07 escape\x1b", "Product ID": "P-CTRL"}),
]

# (case, fields, reasons): just beyond an edge, quarantined with these reasons.
REJECTED = [
    (
        "year-9999",
        {"Order Date": "31-12-9999", "Ship Date": "31-12-9999"},
        ["invalid_date:order_date", "invalid_date:ship_date"],
    ),
    (
        "year-0",
        {"Order Date": "01-01-0000", "Ship Date": "02-01-0000"},
        ["invalid_date:order_date", "invalid_date:ship_date"],
    ),
    ("day-before-first", {"Order Date": "31-12-1899"}, ["invalid_date:order_date"]),
    ("ship-day-after-last", {"Order Date": "31-12-2100", "Ship Date": "01-01-2101"}, ["invalid_date:ship_date"]),
    ("quantity-above-max", {"Quantity": "1000000001"}, ["quantity_out_of_range"]),
    ("quantity-at-bigint-max", {"Quantity": "9223372036854775807"}, ["quantity_out_of_range"]),
    ("sales-beyond-decimal", {"Sales": "100000000000000"}, ["invalid_number:sales"]),
    ("region-too-long", {"Region": NOISE[:1_001]}, ["text_too_long:region"]),
    ("category-too-long", {"Category": "€" * 334, "Product ID": "P-LONG-3"}, ["text_too_long:category"]),
    # PostgreSQL text cannot hold a NUL: every warehouse publish failed
    (
        "nul-in-text",
        {"Product Name": "nul\x00byte", "City": "\x00"},
        ["invalid_text:city", "invalid_text:product_name"],
    ),
]


def export(path: Path, cases: list[tuple], first_row: int = 1) -> Path:
    """A comma-separated export with one line per case (Order ID = the case's name)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FIELDS)
    for row_id, (case, fields, *_) in enumerate(cases, start=first_row):
        values = {**DEFAULTS, **fields, "Row ID": str(row_id), "Order ID": case}
        writer.writerow([values[name] for name in FIELDS])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def gold(settings, query: str) -> list[tuple]:
    return [tuple(r.values()) for r in api.query(query, settings=settings).to_pylist()]


def assert_gold_reconciles(settings) -> None:
    """CONTRACT §5: one fact per silver line, the same total sales; the daily aggregate
    adds up to the facts."""
    silver = sql(Lake(settings.home), "SELECT count(*), sum(sales), sum(quantity) FROM silver.sales_lines")
    assert gold(settings, "SELECT count(*), sum(sales), sum(quantity) FROM gold.fact_sales") == silver
    assert gold(settings, "SELECT sum(lines), sum(sales), sum(quantity) FROM gold.agg_sales_daily") == silver


def warehouse_totals(settings) -> tuple:
    pg = settings.postgres
    with psycopg.connect(
        host="127.0.0.1",
        port=pg.port,
        dbname=pg.warehouse_database,
        user=pg.warehouse_user,
        password=pg.password("warehouse"),
    ) as conn:
        return conn.execute("SELECT count(*), sum(sales) FROM gold.fact_sales").fetchone()


def test_silver_valid_edge_rows_build_test_publish_and_reconcile(tmp_path, postgres_settings):
    settings = postgres_settings
    files = [export(tmp_path / "edge" / "d1.csv", ACCEPTED + REJECTED)]
    assert not api.ingest_csv(files, settings=settings).errors
    result = api.run(settings=settings, max_quarantine_share=1.0, publish=True)
    assert result.status == "succeeded" and result.message == "gold published"
    silver = result.stages["silver"]
    assert (silver.rows_read, silver.rows_valid, silver.rows_quarantined) == (
        len(ACCEPTED) + len(REJECTED),
        len(ACCEPTED),
        len(REJECTED),
    )
    lake = Lake(settings.home)
    assert dict(sql(lake, "SELECT order_id, list_sort(reasons) FROM silver.quarantine")) == {
        case: sorted(reasons) for case, _, reasons in REJECTED
    }
    in_gold = {r["order_id"] for r in api.query("SELECT order_id FROM gold.fact_sales", settings=settings).to_pylist()}
    assert in_gold == {case for case, _ in ACCEPTED}
    assert_gold_reconciles(settings)
    years = api.query("SELECT min(year) AS lo, max(year) AS hi, count(*) AS n FROM gold.dim_date", settings=settings)
    assert years.to_pylist() == [{"lo": 1900, "hi": 2100, "n": 73_415}]  # 201 years and the unknown day
    # readers of the dates work (year 0 broke them)
    assert api.query("SELECT min(order_date) FROM silver.sales_lines", settings=settings).num_rows == 1
    margins = api.query(
        "SELECT order_id, net_sales, profit_margin FROM gold.fact_sales WHERE order_id LIKE '%net-0' "
        "OR order_id = 'max-sales-full-discount' ORDER BY 1",
        settings=settings,
    ).to_pylist()
    assert [(m["net_sales"], m["profit_margin"]) for m in margins] == [(Decimal("0.0000"), None)] * 2
    assert warehouse_totals(settings) == tuple(sql(lake, "SELECT count(*), sum(sales) FROM silver.sales_lines")[0])

    # an incremental build over a second export: corrections move lines to the window's
    # edges, a customer changes on the last plausible day
    later = [
        ("first-plausible-day", {"Order Date": "31-12-2100", "Ship Date": "31-12-2100", "Customer ID": "C-FIRST"}),
        (
            "last-plausible-day",
            {"Order Date": "31-12-2100", "Ship Date": "31-12-2100", "Customer ID": "C-LAST", "Segment": "Corporate"},
        ),
        ("max-sales-1", {"Sales": MAX_MONEY, "Discount": "0.0001", "Quantity": "1"}),
        (
            "new-on-last-day",
            {"Order Date": "31-12-2100", "Ship Date": "", "Customer ID": "C-FIRST", "Segment": "Home Office"},
        ),
    ]
    rows = {case: i for i, (case, _) in enumerate(ACCEPTED, start=1)}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FIELDS)
    for case, fields in later:
        values = {**DEFAULTS, **fields, "Row ID": str(rows.get(case, 999)), "Order ID": case}
        writer.writerow([values[name] for name in FIELDS])
    (tmp_path / "edge" / "d2.csv").write_text(out.getvalue(), encoding="utf-8")
    assert not api.ingest_csv([tmp_path / "edge" / "d2.csv"], settings=settings).errors
    again = api.run(settings=settings, publish=True)
    assert again.status == "succeeded" and again.message == "gold published"
    assert again.stages["silver"].rows_valid == len(later)
    assert_gold_reconciles(settings)
    assert warehouse_totals(settings) == tuple(sql(lake, "SELECT count(*), sum(sales) FROM silver.sales_lines")[0])
