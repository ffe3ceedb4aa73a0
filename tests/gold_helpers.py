"""Helpers of the gold tests (importable as ``gold_helpers``): silver lines made by hand
or synthetically (exactly SALES_LINES_SCHEMA), and gold read back from the warehouse and
from the published Delta tables."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import duckdb
import pyarrow as pa
from deltalake import write_deltalake

from saleslake.config import Settings
from saleslake.contract import SALES_LINES_SCHEMA
from saleslake.gold.publish import GOLD_TABLES
from saleslake.gold.release import gold_release_tables
from saleslake.lake import Lake

# --------------------------------------------------------------------------- silver


def line_key(source_system: str, order_id: str, line_id: str) -> str:
    return hashlib.sha256(f"{source_system}\x1f{order_id}\x1f{line_id}".encode()).hexdigest()[:32]


def silver_line(order_id: str, line_id: str = "1", **overrides) -> dict:
    """One silver sales line with plausible defaults; override any column."""
    order_date = overrides.pop("order_date", date(2024, 1, 1))
    source_system = overrides.pop("source_system", "csv:test")
    quantity = overrides.pop("quantity", 2)
    sales = Decimal(overrides.pop("sales", "100.0000"))
    row = {
        "line_key": line_key(source_system, order_id, line_id),
        "source_system": source_system,
        "order_id": order_id,
        "line_id": line_id,
        "order_date": order_date,
        "order_ts": None,
        "ship_date": order_date,
        "ship_mode": "Standard Class",
        "order_priority": "Medium",
        "customer_id": "C-1",
        "customer_name": "Claire Gute",
        "segment": "Consumer",
        "city": "Henderson",
        "state": "Kentucky",
        "country": "United States",
        "postal_code": "42420",
        "market": "US",
        "region": "South",
        "store_id": None,
        "product_id": "P-1",
        "product_name": "Bush Somerset Bookcase",
        "category": "Furniture",
        "sub_category": "Bookcases",
        "quantity": quantity,
        "unit_price": (sales / quantity).quantize(Decimal("0.0001")),
        "sales": sales,
        "discount": Decimal("0.2000"),
        "profit": Decimal("10.0000"),
        "shipping_cost": Decimal("5.0000"),
        "currency": "USD",
        "tax_rate": Decimal("0.0500"),
        "tax_amount": (sales * Decimal("0.8") * Decimal("0.05")).quantize(Decimal("0.01")),
        "is_suspected_fraud": False,
        "fraud_reasons": [],
        "is_outlier": False,
        "dq_score": 100,
        "row_hash": None,
        "bronze_uri": "bronze/csv/test.csv",
        "source_position": line_id,
        "landed_seq": 1,
        "batch_id": "b1",
        "ingested_at": datetime(2024, 6, 1, tzinfo=UTC),
        "payment_method": None,
        "card_fingerprint": None,
    }
    unknown = set(overrides) - set(row)
    assert not unknown, f"not silver columns: {unknown}"
    row.update(overrides)
    row["order_month"] = row["order_date"].strftime("%Y-%m")
    row["row_hash"] = row["row_hash"] or hashlib.md5(repr(sorted(row.items())).encode()).hexdigest()
    return row


def lines_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SALES_LINES_SCHEMA)


def synthetic_silver(rows: int, seed: int = 7, start: date = date(2022, 1, 1)) -> pa.Table:
    """``rows`` synthetic silver lines with exactly SALES_LINES_SCHEMA, made set-based in
    DuckDB (fast at millions of rows): ~rows/20 customers and ~rows/100 products whose
    attributes change over time (some disagree within a day), 3 years of orders, 5 % POS
    lines with 5 stores, some unshipped lines and lines without any geography."""
    customers = max(rows // 20, 10)
    products = max(rows // 100, 10)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        rel = con.sql(
            f"""
            with base as (
                select i,
                       cast(hash('c' || i || '/' || {seed}) % {customers} as bigint) as c,
                       cast(hash('p' || i || '/' || {seed}) % {products} as bigint) as p,
                       cast(hash('d' || i || '/' || {seed}) % 1095 as bigint) as d,
                       cast(hash('g' || i || '/' || {seed}) % 60 as bigint) as g,
                       cast(hash('x' || i || '/' || {seed}) % 1000 as bigint) as x,
                       1 + cast(hash('q' || i || '/' || {seed}) % 9 as bigint) as q,
                       100 + cast(hash('u' || i || '/' || {seed}) % 500000 as bigint) as price_cents
                from range({rows}) t(i)
            ),
            lines as (
                select * replace (case when x < 50 then 1 + x % 5 else g end as g),
                       date '{start.isoformat()}' + cast(d as integer) as od,
                       case when x < 50 then 'pos' else 'csv:synthetic' end as src,
                       cast(q * price_cents as decimal(18, 4)) / 100 as sales_amt
                from base
            )
            select
                md5(src || '|' || 'O-' || (i // 3) || '|' || (i % 3)) as line_key,
                src as source_system,
                'O-' || (i // 3) as order_id,
                cast(i % 3 as varchar) as line_id,
                od as order_date,
                case when src = 'pos' then cast(od as timestamptz) + to_seconds(x * 37) end as order_ts,
                case when x between 100 and 119 then null else od + cast(x % 8 as integer) end as ship_date,
                ['First Class', 'Second Class', 'Standard Class', 'Same Day'][1 + x % 4] as ship_mode,
                ['Low', 'Medium', 'High', 'Critical'][1 + x % 4] as order_priority,
                'C-' || c as customer_id,
                'Customer ' || c || case when c % 11 = 0 and d > 500 then ' (married)' else '' end
                    -- 2 % of customers are spelled two ways, even on the same day
                    || case when c % 50 = 0 and x % 2 = 0 then ' Jr' else '' end as customer_name,
                ['Consumer', 'Corporate', 'Home Office'][
                    1 + ((c + (case when c % 7 = 0 then d // 365 else 0 end)) % 3)] as segment,
                case when g = 0 then null else 'City ' || g end as city,
                case when g = 0 then null else 'State ' || (g % 20) end as state,
                case when g = 0 then null else ['United States', 'Germany', 'France'][1 + g % 3] end as country,
                case when g = 0 then null else lpad(cast(g * 97 as varchar), 5, '0') end as postal_code,
                case when g = 0 then null else ['US', 'EU', 'EU'][1 + g % 3] end as market,
                case when g = 0 then null else ['East', 'West', 'Central', 'South'][1 + g % 4] end as region,
                case when src = 'pos' then 'ST-' || lpad(cast(x % 5 as varchar), 4, '0') end as store_id,
                'P-' || p as product_id,
                'Product ' || p as product_name,
                ['Furniture', 'Office Supplies', 'Technology'][
                    1 + ((p + (case when p % 13 = 0 and d > 700 then 1 else 0 end)) % 3)] as category,
                'Sub ' || (p % 17) as sub_category,
                cast(q as bigint) as quantity,
                cast(sales_amt / q as decimal(18, 4)) as unit_price,
                cast(sales_amt as decimal(18, 4)) as sales,
                cast((x % 5) / 10 as decimal(9, 4)) as discount,
                cast(sales_amt * ((x % 7) - 2) / 10 as decimal(18, 4)) as profit,
                case when x % 9 = 0 then null else cast(sales_amt / 20 as decimal(18, 4)) end as shipping_cost,
                'USD' as currency,
                cast(0.05 as decimal(9, 4)) as tax_rate,
                cast(round(sales_amt * (1 - (x % 5) / 10) * 0.05, 2) as decimal(18, 4)) as tax_amount,
                sales_amt > 1000 as is_suspected_fraud,
                case when sales_amt > 1000 then ['amount_above_threshold'] else [] end as fraud_reasons,
                sales_amt > 10000 as is_outlier,
                cast(80 + x % 21 as integer) as dq_score,
                md5('h' || i) as row_hash,
                'bronze/csv/synthetic-' || (i // 100000) || '.csv' as bronze_uri,
                cast(i % 100000 + 2 as varchar) as source_position,
                cast(i // 100000 as bigint) as landed_seq,
                'batch-' || (i // 100000) as batch_id,
                timestamptz '2025-01-01 00:00:00+00' as ingested_at,
                strftime(od, '%Y-%m') as order_month,
                case when src = 'pos' then 'card' end as payment_method,
                case when src = 'pos' then 'fp-' || (x % 40) end as card_fingerprint
            from lines
            """
        )
        return rel.to_arrow_table().cast(SALES_LINES_SCHEMA)
    finally:
        con.close()


def write_silver(lake: Lake, table: pa.Table, mode: str = "append") -> None:
    assert table.schema == SALES_LINES_SCHEMA
    write_deltalake(str(lake.sales_lines), table, mode=mode, partition_by=["order_month"])


# --------------------------------------------------------------------------- helpers


def settings() -> Settings:
    return Settings(duckdb_memory_limit="1GB", duckdb_threads=2)


def warehouse_rows(lake: Lake, sql: str) -> list[tuple]:
    con = duckdb.connect(str(lake.warehouse), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def warehouse_table(lake: Lake, name: str, order_by: str, internal: bool = False) -> pa.Table:
    """A gold table of the warehouse, sorted; without the internal (leading underscore)
    columns, which are not published, unless ``internal``."""
    con = duckdb.connect(str(lake.warehouse), read_only=True)
    try:
        columns = [c for c in con.sql(f"select * from gold.{name}").columns if internal or not c.startswith("_")]
        select = ", ".join(f'"{c}"' for c in columns)
        return con.sql(f"select {select} from gold.{name} order by {order_by}").to_arrow_table()
    finally:
        con.close()


ORDER_BY = {
    "dim_date": "date_key",
    "dim_customer": "customer_sk",
    "dim_product": "product_sk",
    "dim_store": "store_sk",
    "dim_geography": "geography_sk",
    "fact_sales": "line_key",
    "agg_sales_daily": "date_key, region, category",
}


def gold_snapshot(lake: Lake) -> dict[str, pa.Table]:
    return {name: warehouse_table(lake, name, ORDER_BY[name], internal=True) for name in GOLD_TABLES}


def published_snapshot(lake: Lake) -> dict[str, pa.Table]:
    """Every gold table of the latest release, read from Delta, sorted like the warehouse."""
    tables = gold_release_tables(lake)
    snapshot = {}
    for name in GOLD_TABLES:
        sort_keys = [(column.strip(), "ascending") for column in ORDER_BY[name].split(",")]
        snapshot[name] = tables[name].to_pyarrow_table().sort_by(sort_keys)
    return snapshot


def assert_same_gold(actual: dict[str, pa.Table], expected: dict[str, pa.Table], what: str) -> None:
    assert set(actual) == set(expected)
    for name in GOLD_TABLES:
        assert actual[name].schema == expected[name].schema, f"{what}: {name} schema"
        assert actual[name].equals(expected[name]), f"{what}: {name}"


# --------------------------------------------------------------------------- fraud


def velocity_key(row: dict) -> tuple | None:
    """What the velocity rule counts a line's transaction under: its source and card, else
    its named customer (a walk-in is nobody); None without an event time."""
    if row["order_ts"] is None:
        return None
    if row["card_fingerprint"] is not None:
        return (row["source_system"], "card", row["card_fingerprint"])
    if row["customer_id"] is not None and not (row["source_system"] == "pos" and row["customer_id"] == "WALK-IN"):
        return (row["source_system"], "customer", row["customer_id"])
    return None


def reference_history_flags(rows: list[dict], fraud) -> dict[str, list[str]]:
    """The history fraud rules (CONTRACT §7, gold's macros/fraud.sql) computed the slow,
    obvious way over silver lines: line_key -> the history reasons of every line that has
    one. Only lines with an event time are judged and are evidence."""
    judged = [r for r in rows if r["order_ts"] is not None]
    window = timedelta(seconds=fraud.velocity_window_seconds)
    transactions: dict[tuple, set] = {}
    for r in judged:
        key = velocity_key(r)
        if key is not None:
            transactions.setdefault(key, set()).add((r["order_id"], r["order_ts"]))
    by_product: dict[str, list[dict]] = {}
    for r in judged:
        by_product.setdefault(r["product_id"], []).append(r)
    out: dict[str, list[str]] = {}
    for r in judged:
        reasons = []
        key = velocity_key(r)
        if key is not None:
            t = r["order_ts"]
            recent = sum(1 for _, other in transactions[key] if t - window <= other <= t)
            if recent > fraud.velocity_max_transactions:
                reasons.append("velocity")
        first_day = r["order_date"] - timedelta(days=fraud.quantity_norm_days)
        evidence = [
            e["quantity"]
            for e in by_product[r["product_id"]]
            if first_day <= e["order_date"] < r["order_date"]
            or (e["order_date"] == r["order_date"] and e["order_ts"] < r["order_ts"])
        ]
        if len(evidence) >= fraud.quantity_norm_min_lines and r["quantity"] * len(evidence) > (
            fraud.quantity_norm_multiple * sum(evidence)
        ):
            reasons.append("quantity_above_norm")
        if reasons:
            out[r["line_key"]] = reasons
    return out
