"""Gold layer: the dbt star schema built from synthetic silver (runs dbt: integration),
full and incremental builds, and the Delta publish."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from gold_helpers import (
    ORDER_BY,
    assert_same_gold,
    gold_snapshot,
    lines_table,
    published_snapshot,
    settings,
    silver_line,
    synthetic_silver,
    warehouse_rows,
    warehouse_table,
    write_silver,
)

from saleslake.contract import SALES_LINES_SCHEMA
from saleslake.errors import PipelineError
from saleslake.gold import publish as gold_publish
from saleslake.gold.build import DBT_PROJECT_DIR, build_gold, run_dbt
from saleslake.gold.release import (
    GOLD_TABLES,
    gold_release_tables,
    latest_release,
    register_gold_release,
    releases,
)
from saleslake.lake import Lake

OPEN_END = date(9999, 12, 31)


# The hand-made history: customer H-1 is Consumer, turns Corporate on day 3 and back to
# Consumer on day 7 -> 3 versions. Two lines on day 3 landed in different batches: the
# later landed one wins for that day.
D = [date(2024, 3, day) for day in range(1, 11)]
HISTORY = [
    silver_line("H-100", order_date=D[0], customer_id="H-1", segment="Consumer"),
    silver_line("H-101", order_date=D[1], customer_id="H-1", segment="Consumer"),
    silver_line("H-102", order_date=D[2], customer_id="H-1", segment="Home Office", landed_seq=1),
    silver_line("H-103", order_date=D[2], customer_id="H-1", segment="Corporate", landed_seq=2),
    silver_line("H-104", order_date=D[4], customer_id="H-1", segment="Corporate"),
    silver_line("H-105", order_date=D[6], customer_id="H-1", segment="Consumer"),
    silver_line("H-106", order_date=D[8], customer_id="H-1", segment="Consumer", ship_date=None),
    # same day, same landing: the later position in natural order wins ("10" after "9")
    silver_line("H-200", line_id="9", order_date=D[0], customer_id="H-3", segment="Row 9"),
    silver_line("H-200", line_id="10", order_date=D[0], customer_id="H-3", segment="Row 10"),
    # same day with event times: the later instant wins, whatever was landed last
    silver_line(
        "H-300",
        order_date=D[0],
        customer_id="H-4",
        segment="Late event",
        order_ts=datetime(2024, 3, 1, 18, 0, tzinfo=UTC),
        landed_seq=1,
    ),
    silver_line(
        "H-301",
        order_date=D[0],
        customer_id="H-4",
        segment="Early event",
        order_ts=datetime(2024, 3, 1, 9, 0, tzinfo=UTC),
        landed_seq=5,
    ),
    # a line without any geography -> geography_sk -1
    silver_line(
        "H-107",
        order_date=D[9],
        customer_id="H-2",
        city=None,
        state=None,
        country=None,
        postal_code=None,
        region=None,
        market=None,
    ),
]


def customer_versions(lake: Lake, customer_id: str) -> list[tuple]:
    return warehouse_rows(
        lake,
        "select version, segment, valid_from, valid_to, is_current from gold.dim_customer "
        f"where customer_id = '{customer_id}' order by version",
    )


def fact_customer_segments(lake: Lake, customer_id: str) -> dict[str, str]:
    rows = warehouse_rows(
        lake,
        "select f.order_id, c.segment from gold.fact_sales f join gold.dim_customer c using (customer_sk) "
        f"where c.customer_id = '{customer_id}'",
    )
    return dict(rows)


# --------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    """A lake with synthetic + hand-made silver, built and published once."""
    lake = Lake(tmp_path_factory.mktemp("gold") / "lake")
    silver = pa.concat_tables([synthetic_silver(20_000), lines_table(HISTORY)])
    write_silver(lake, silver)
    result = build_gold(lake, settings(), run_id="run-1")
    return lake, silver, result


def reference_scd2(rows: list[dict], key: str, attributes: list[str]) -> list[tuple]:
    """SCD2 versions computed the slow, obvious way (CONTRACT §5), to check dbt against:
    per key and day the last observation (order_ts or start of day, landed_seq, position
    in natural order, line_key) wins; equal consecutive days merge."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)

    def order(row: dict) -> tuple:
        instant = row["order_ts"] or datetime.combine(row["order_date"], datetime.min.time(), UTC)
        position = row["source_position"] or ""
        return (instant - epoch, row["landed_seq"], len(position), position, row["line_key"])

    last_of_day: dict[tuple, dict] = {}
    for row in sorted((r for r in rows if r[key] is not None), key=order):
        last_of_day[(row[key], row["order_date"])] = row
    versions: list[tuple] = []
    by_key: dict[str, list[tuple]] = {}
    for (natural_key, day), row in sorted(last_of_day.items()):
        by_key.setdefault(natural_key, []).append((day, tuple(row[a] for a in attributes)))
    for natural_key, days in by_key.items():
        starts = [(day, attrs) for i, (day, attrs) in enumerate(days) if i == 0 or days[i - 1][1] != attrs]
        for number, (day, attrs) in enumerate(starts, start=1):
            valid_to = starts[number][0] if number < len(starts) else OPEN_END
            versions.append((natural_key, *attrs, day, valid_to, number == len(starts), number))
    return sorted(versions)


SCD2_DIMS = {
    "dim_customer": ("customer_id", ["customer_name", "segment"]),
    "dim_product": ("product_id", ["product_name", "category", "sub_category"]),
    "dim_store": ("store_id", ["store_name", "channel", "city", "state", "country", "region", "market"]),
}


def test_star_schema_row_counts_and_scd2_versions(built) -> None:
    lake, silver, result = built
    assert set(result.tables) == set(GOLD_TABLES)
    assert result.seconds > 0
    assert result.tables["fact_sales"] == silver.num_rows
    rows = silver.to_pylist()
    for row in rows:  # what staging derives for stores from sales lines
        row["store_name"] = None
        row["channel"] = row["source_system"].split(":")[0]
    for dim, (key, attributes) in SCD2_DIMS.items():
        expected = reference_scd2(rows, key, attributes)
        columns = ", ".join([key, *attributes, "valid_from", "valid_to", "is_current", "version"])
        actual = warehouse_rows(lake, f"select {columns} from gold.{dim} where {key} is not null order by all")
        assert actual == expected, dim
        assert result.tables[dim] == len(expected) + 1, dim  # + unknown member
    assert result.tables["dim_customer"] > len({r["customer_id"] for r in rows}) + 1  # some customers changed
    assert result.tables["dim_store"] == 6  # 5 stores of POS lines, + unknown
    geographies = {tuple(r[c] for c in ("city", "state", "country", "postal_code", "region", "market")) for r in rows}
    geographies.discard((None,) * 6)
    assert result.tables["dim_geography"] == len(geographies) + 1
    first = min(r["order_date"].year for r in rows)
    last = max((r["ship_date"] or r["order_date"]).year for r in rows)
    days = (date(last, 12, 31) - date(first, 1, 1)).days + 1
    assert result.tables["dim_date"] == days + 1  # whole years, + unknown date
    ((agg_rows,),) = warehouse_rows(
        lake,
        "select count(*) from (select distinct f.order_date_key, g.region, p.category from gold.fact_sales f "
        "join gold.dim_geography g using (geography_sk) join gold.dim_product p using (product_sk))",
    )
    assert result.tables["agg_sales_daily"] == agg_rows


def test_fact_reconciles_with_silver(built) -> None:
    lake, silver, _ = built
    ((rows, sales),) = warehouse_rows(lake, "select count(*), sum(sales) from gold.fact_sales")
    assert rows == silver.num_rows
    assert isinstance(sales, Decimal)
    assert sales == sum(silver.column("sales").to_pylist(), Decimal(0))
    ((agg_lines, agg_sales),) = warehouse_rows(lake, "select sum(lines), sum(sales) from gold.agg_sales_daily")
    assert (agg_lines, agg_sales) == (rows, sales)
    # measures
    ((bad,),) = warehouse_rows(
        lake,
        "select count(*) from gold.fact_sales where discount_amount <> round(sales * discount, 4) "
        "or net_sales <> sales - discount_amount "
        "or (net_sales = 0) <> (profit_margin is null)",
    )
    assert bad == 0
    types = dict(
        warehouse_rows(
            lake,
            "select column_name, data_type from duckdb_columns() "
            "where schema_name = 'gold' and table_name = 'fact_sales'",
        )
    )
    for column in ("unit_price", "sales", "discount_amount", "net_sales", "profit", "shipping_cost", "tax_amount"):
        assert types[column] == "DECIMAL(18,4)", column


def test_scd2_hand_made_history(built) -> None:
    lake, _, _ = built
    assert customer_versions(lake, "H-1") == [
        (1, "Consumer", D[0], D[2], False),
        (2, "Corporate", D[2], D[6], False),
        (3, "Consumer", D[6], OPEN_END, True),
    ]
    assert fact_customer_segments(lake, "H-1") == {
        "H-100": "Consumer",
        "H-101": "Consumer",
        "H-102": "Corporate",
        "H-103": "Corporate",
        "H-104": "Corporate",
        "H-105": "Consumer",
        "H-106": "Consumer",
    }
    assert customer_versions(lake, "H-3") == [(1, "Row 10", D[0], OPEN_END, True)]
    assert customer_versions(lake, "H-4") == [(1, "Late event", D[0], OPEN_END, True)]
    # each fact points at the version valid on its order date
    ((mismatched,),) = warehouse_rows(
        lake,
        "select count(*) from gold.fact_sales f join gold.dim_customer c using (customer_sk) "
        "join gold.dim_date d on d.date_key = f.order_date_key "
        "where not (c.valid_from <= d.date and d.date < c.valid_to)",
    )
    assert mismatched == 0


def test_unknown_members(built) -> None:
    lake, _, _ = built
    for dim, sk in (
        ("dim_customer", "customer_sk"),
        ("dim_product", "product_sk"),
        ("dim_store", "store_sk"),
        ("dim_geography", "geography_sk"),
        ("dim_date", "date_key"),
    ):
        rows = warehouse_rows(lake, f"select * from gold.{dim} where {sk} = -1")
        assert len(rows) == 1, dim
        assert "Unknown" in rows[0], dim
    unshipped = warehouse_rows(lake, "select ship_date_key, geography_sk from gold.fact_sales where order_id = 'H-106'")
    assert unshipped[0][0] == -1
    no_geo = warehouse_rows(lake, "select geography_sk, store_sk from gold.fact_sales where order_id = 'H-107'")
    assert no_geo == [(-1, -1)]
    ((nulls,),) = warehouse_rows(
        lake,
        "select count(*) from gold.fact_sales where order_date_key is null or ship_date_key is null "
        "or customer_sk is null or product_sk is null or store_sk is null or geography_sk is null",
    )
    assert nulls == 0
    ((pos_unresolved,),) = warehouse_rows(
        lake, "select count(*) from gold.fact_sales where source_system = 'pos' and store_sk = -1"
    )
    assert pos_unresolved == 0


def test_published_delta_equals_warehouse(built) -> None:
    lake, _, result = built
    release = latest_release(lake)
    assert release == result.versions
    assert set(release) == set(GOLD_TABLES)
    tables = gold_release_tables(lake)
    for name in GOLD_TABLES:
        delta = tables[name].to_pyarrow_table()
        expected = warehouse_table(lake, name, ORDER_BY[name])
        assert delta.schema == expected.schema, name
        sort_keys = [(column.strip(), "ascending") for column in ORDER_BY[name].split(",")]
        assert delta.sort_by(sort_keys).equals(expected), name
    fact_schema = pa.schema(tables["fact_sales"].schema())
    assert fact_schema.field("sales").type == pa.decimal128(18, 4)
    assert fact_schema.field("net_sales").type == pa.decimal128(18, 4)
    assert tables["fact_sales"].metadata().partition_columns == ["order_month"]
    assert not [name for name in fact_schema.names if name.startswith("_")]
    assert result.fact_changes["mode"] == "full" and result.fact_changes["publish"] == "overwrite"
    con = duckdb.connect()
    assert sorted(register_gold_release(con, lake)) == sorted(GOLD_TABLES)
    assert con.execute("select count(*) from gold.fact_sales").fetchone()[0] == result.tables["fact_sales"]
    assert releases(lake)[-1]["run_id"] == "run-1"
    # dbt wrote nothing into the package
    assert not (DBT_PROJECT_DIR / "target").exists()
    assert not (DBT_PROJECT_DIR / "logs").exists()
    assert (lake.home / "dbt" / "target" / "run_results.json").is_file()


def test_rebuild_is_identical_then_late_data_resplits_history(built) -> None:
    lake, _, first = built
    before = gold_snapshot(lake)
    second = build_gold(lake, settings(), run_id="run-2")
    after = gold_snapshot(lake)
    for name in GOLD_TABLES:
        assert after[name].equals(before[name]), name
    # an incremental build that found nothing to do: a second release, the small tables
    # one Delta version further, the fact untouched (no empty MERGE)
    assert second.fact_changes["mode"] == "incremental"
    assert (second.fact_changes["recomputed"], second.fact_changes["deleted"]) == (0, 0)
    assert [r["run_id"] for r in releases(lake)] == ["run-1", "run-2"]
    assert second.versions == {name: v + (name != "fact_sales") for name, v in first.versions.items()}
    keys_before = dict(
        warehouse_rows(
            lake, "select customer_id || valid_from, customer_sk from gold.dim_customer where customer_id like 'C-%'"
        )
    )

    # late data: a line ordered on day 5 (landed later) says H-1 was Home Office then
    late = silver_line("H-108", order_date=D[5], customer_id="H-1", segment="Home Office", landed_seq=9)
    write_silver(lake, lines_table([late]))
    build_gold(lake, settings(), run_id="run-3", publish=False)
    assert customer_versions(lake, "H-1") == [
        (1, "Consumer", D[0], D[2], False),
        (2, "Corporate", D[2], D[5], False),
        (3, "Home Office", D[5], D[6], False),
        (4, "Consumer", D[6], OPEN_END, True),
    ]
    segments = fact_customer_segments(lake, "H-1")
    assert segments["H-108"] == "Home Office" and segments["H-104"] == "Corporate"
    # keys of unrelated customers did not move
    keys_after = dict(
        warehouse_rows(
            lake, "select customer_id || valid_from, customer_sk from gold.dim_customer where customer_id like 'C-%'"
        )
    )
    assert keys_after == keys_before
    # publish=False: no new release
    assert [r["run_id"] for r in releases(lake)] == ["run-1", "run-2"]


def test_dbt_tests_catch_broken_gold(built, tmp_path: Path) -> None:
    """The SCD2 and reconciliation tests fail on a tampered copy of the warehouse."""
    source, _, _ = built
    lake = Lake(tmp_path / "lake")
    lake.home.mkdir(parents=True)
    shutil.copy(source.warehouse, lake.warehouse)
    con = duckdb.connect(str(lake.warehouse))
    try:
        # version 1 of H-1 now runs into version 2 (overlap, and no longer contiguous)
        con.execute("update gold.dim_customer set valid_to = valid_to + 1 where customer_id = 'H-1' and version = 1")
        # a product with no current version
        con.execute("update gold.dim_product set is_current = false where product_id = 'P-1'")
        # a fact line lost
        con.execute("delete from gold.fact_sales where order_id = 'H-100'")
    finally:
        con.close()
    with pytest.raises(PipelineError) as info:
        run_dbt(lake, settings(), ["test"])
    message = str(info.value)
    assert message.startswith("gold tests failed:")
    for name in (
        "scd2_no_overlap_dim_customer",
        "scd2_no_gaps_dim_customer",
        "scd2_one_current_dim_product",
        "reconcile_fact_sales_with_silver",
        "reconcile_agg_sales_daily_with_fact",
    ):
        assert name in message, name
    assert "scd2_valid_range_dim_customer" not in message


def test_dbt_leaves_the_warehouse_file_closed(built) -> None:
    """dbt keeps one handle on the warehouse for a whole command (keep_open); when it ends
    the file is closed, so this process can open it with other settings (DuckDB refuses a
    second configuration of an open file)."""
    lake, _, result = built
    run_dbt(lake, settings(), ["test"])
    con = duckdb.connect(str(lake.warehouse), read_only=True)
    try:
        assert con.execute("select count(*) from gold.fact_sales").fetchone()[0] >= result.tables["fact_sales"]
    finally:
        con.close()


def test_failing_dbt_test_raises_pipeline_error(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    # bad silver: the same line twice (silver must be deduplicated) and one good line
    twice = silver_line("X-1")
    write_silver(lake, lines_table([twice, twice, silver_line("X-2")]))
    with pytest.raises(PipelineError) as info:
        build_gold(lake, settings(), run_id="bad")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("gold tests failed:")
    assert "unique_fact_sales_line_key" in message
    assert latest_release(lake) is None  # nothing published


def test_empty_silver_builds_unknown_members_only(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    result = build_gold(lake, settings(), run_id="empty", publish=False)
    assert result.tables["fact_sales"] == 0
    assert result.tables["dim_customer"] == result.tables["dim_store"] == result.tables["dim_date"] == 1
    assert result.versions == {}


# --------------------------------------------------------------------------- incremental


def rekeyed(table: pa.Table, tag: str) -> pa.Table:
    """The same lines as new lines: other order ids, line keys and row hashes."""
    con = duckdb.connect()
    try:
        con.register("t", table)
        return (
            con.sql(
                f"""select * replace (md5(line_key || '{tag}') as line_key, '{tag}-' || order_id as order_id,
                                  md5(row_hash || '{tag}') as row_hash)
                from t"""
            )
            .to_arrow_table()
            .cast(SALES_LINES_SCHEMA)
        )
    finally:
        con.close()


def full_rebuild_of(lake: Lake, tmp_path: Path) -> tuple[dict[str, pa.Table], dict[str, pa.Table]]:
    """(warehouse, published) gold of a full rebuild from the same silver, on a copy."""
    copy = Lake(tmp_path / "full")
    shutil.copytree(lake.home, copy.home)
    result = build_gold(copy, settings(), run_id="full", full_refresh=True)
    assert result.fact_changes["mode"] == "full"
    return gold_snapshot(copy), published_snapshot(copy)


def fact_of(lake: Lake, order_id: str) -> dict:
    con = duckdb.connect(str(lake.warehouse), read_only=True)
    try:
        rows = con.sql(f"select * from gold.fact_sales where order_id = '{order_id}'").to_arrow_table().to_pylist()
    finally:
        con.close()
    assert len(rows) <= 1
    return rows[0] if rows else {}


# Customer R-1 bought on D0, D2 and D4, always as a Consumer: one version, one surrogate
# key. A late line on D1 says Home Office: the history re-splits into three versions, and
# the facts of D2 and D4 must move to the version starting on D2.
RESPLIT = [
    silver_line("R-100", order_date=D[0], customer_id="R-1", segment="Consumer"),
    silver_line("R-102", order_date=D[2], customer_id="R-1", segment="Consumer"),
    silver_line("R-104", order_date=D[4], customer_id="R-1", segment="Consumer"),
    # product Q-1 is sold once only, by the line the correction test moves to Q-2
    silver_line("R-200", order_date=D[3], customer_id="R-2", product_id="Q-1", product_name="Only sale"),
    # customer R-3 has a single line, in a town of its own, which the removal test deletes
    silver_line("R-300", order_date=D[5], customer_id="R-3", city="Lonely Town"),
]


@pytest.fixture(scope="module")
def incremental(tmp_path_factory: pytest.TempPathFactory):
    """A lake built once in full; the tests below change its silver step by step and
    build incrementally (they run in file order and depend on each other)."""
    lake = Lake(tmp_path_factory.mktemp("incremental") / "lake")
    base = synthetic_silver(4_000, seed=11)
    write_silver(lake, pa.concat_tables([base, lines_table(RESPLIT)]))
    first = build_gold(lake, settings(), run_id="inc-0")
    assert first.fact_changes["mode"] == "full"
    return lake, base


def test_incremental_build_after_new_lines_equals_full_rebuild(incremental, tmp_path: Path) -> None:
    lake, base = incremental
    facts_before = warehouse_table(lake, "fact_sales", "line_key", internal=True)
    new = rekeyed(base.slice(0, 60), "new")  # existing customers and products, spread over 3 years
    write_silver(lake, new)
    result = build_gold(lake, settings(), run_id="inc-1")
    changes = result.fact_changes
    assert (changes["mode"], changes["silver_diff"], changes["publish"]) == ("incremental", "files", "merge")
    assert changes["deleted"] == 0
    # the new lines, plus the facts whose version moved (late lines re-split histories),
    # not the whole fact
    assert new.num_rows <= changes["recomputed"] < facts_before.num_rows // 4
    assert result.tables["fact_sales"] == facts_before.num_rows + new.num_rows
    warehouse, published = gold_snapshot(lake), published_snapshot(lake)
    expected_warehouse, expected_published = full_rebuild_of(lake, tmp_path)
    assert_same_gold(warehouse, expected_warehouse, "warehouse")
    assert_same_gold(published, expected_published, "published")
    # the release holds the warehouse's content
    for name in GOLD_TABLES:
        assert published[name].equals(warehouse_table(lake, name, ORDER_BY[name])), name


def test_late_line_repoints_the_facts_of_a_resplit_history(incremental) -> None:
    lake, _ = incremental
    before = {order: fact_of(lake, order)["customer_sk"] for order in ("R-100", "R-102", "R-104")}
    assert len(set(before.values())) == 1
    late = silver_line("R-101", order_date=D[1], customer_id="R-1", segment="Home Office", landed_seq=7)
    write_silver(lake, lines_table([late]))
    result = build_gold(lake, settings(), run_id="inc-2")
    assert customer_versions(lake, "R-1") == [
        (1, "Consumer", D[0], D[1], False),
        (2, "Home Office", D[1], D[2], False),
        (3, "Consumer", D[2], OPEN_END, True),
    ]
    assert fact_customer_segments(lake, "R-1") == {
        "R-100": "Consumer",
        "R-101": "Home Office",
        "R-102": "Consumer",
        "R-104": "Consumer",
    }
    after = {order: fact_of(lake, order)["customer_sk"] for order in ("R-100", "R-102", "R-104")}
    assert after["R-100"] == before["R-100"]  # before the late line: same version
    assert after["R-102"] == after["R-104"] != before["R-102"]  # re-pointed to version 3
    # exactly the late line and the two re-pointed facts were recomputed
    assert (result.fact_changes["recomputed"], result.fact_changes["deleted"]) == (3, 0)
    published = published_snapshot(lake)["fact_sales"].to_pylist()
    assert {r["order_id"]: r["customer_sk"] for r in published if r["order_id"].startswith("R-10")} == {
        "R-100": after["R-100"],
        "R-101": fact_of(lake, "R-101")["customer_sk"],
        "R-102": after["R-102"],
        "R-104": after["R-104"],
    }


def test_corrected_line_is_recomputed(incremental) -> None:
    lake, _ = incremental
    old = fact_of(lake, "R-200")
    corrected = silver_line(
        "R-200",
        order_date=D[3],
        customer_id="R-2",
        product_id="Q-2",
        product_name="Other",
        quantity=5,
        sales="250.0000",
        landed_seq=8,
    )
    assert corrected["line_key"] == old["line_key"]
    # what silver does with a correction: replace the line (rewriting its file)
    (
        DeltaTable(str(lake.sales_lines))
        .merge(lines_table([corrected]), predicate="t.line_key = s.line_key", source_alias="s", target_alias="t")
        .when_matched_update_all()
        .execute()
    )
    result = build_gold(lake, settings(), run_id="inc-3")
    assert result.fact_changes["silver_diff"] == "files"
    assert result.fact_changes["recomputed"] == 1  # the rewritten file's other lines did not change
    new = fact_of(lake, "R-200")
    (product,) = warehouse_rows(lake, f"select product_id from gold.dim_product where product_sk = {new['product_sk']}")
    assert product == ("Q-2",)
    assert (new["quantity"], new["sales"]) == (5, Decimal("250.0000"))
    # Q-1 lost its only sale: it is gone from the dimension
    assert warehouse_rows(lake, "select count(*) from gold.dim_product where product_id = 'Q-1'") == [(0,)]
    published = [r for r in published_snapshot(lake)["fact_sales"].to_pylist() if r["order_id"] == "R-200"]
    assert [(r["product_sk"], r["sales"]) for r in published] == [(new["product_sk"], Decimal("250.0000"))]


def test_line_removed_from_silver_is_removed_from_gold(incremental) -> None:
    lake, _ = incremental
    removed = fact_of(lake, "R-300")
    day_lines = f"select sum(lines) from gold.agg_sales_daily where date_key = {removed['order_date_key']}"
    ((agg_before,),) = warehouse_rows(lake, day_lines)
    lonely = "select count(*) from gold.dim_geography where city = 'Lonely Town'"
    assert warehouse_rows(lake, lonely) == [(1,)]
    DeltaTable(str(lake.sales_lines)).delete("order_id = 'R-300'")
    result = build_gold(lake, settings(), run_id="inc-4")
    assert (result.fact_changes["recomputed"], result.fact_changes["deleted"]) == (0, 1)
    assert result.fact_changes["merged_deletes"] == 1
    assert fact_of(lake, "R-300") == {}
    assert customer_versions(lake, "R-3") == []  # its only line is gone
    assert warehouse_rows(lake, lonely) == [(0,)]  # and so is its geography
    ((agg_after,),) = warehouse_rows(lake, day_lines)
    assert agg_after == agg_before - 1
    assert not [r for r in published_snapshot(lake)["fact_sales"].to_pylist() if r["order_id"] == "R-300"]


def test_publish_that_dies_before_the_release_is_redone(incremental, monkeypatch: pytest.MonkeyPatch) -> None:
    """The warehouse changed, the Delta fact merged, then the process died before the
    release was recorded: the next build (silver unchanged) publishes the same changes."""
    lake, base = incremental
    write_silver(lake, rekeyed(base.slice(100, 20), "crash"))
    versions_before = latest_release(lake)

    def die(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(gold_publish, "record_release", die)
    with pytest.raises(KeyboardInterrupt):
        build_gold(lake, settings(), run_id="inc-5")
    monkeypatch.undo()
    assert latest_release(lake) == versions_before  # readers still see the previous gold
    assert DeltaTable(str(lake.gold / "fact_sales")).version() > versions_before["fact_sales"]
    result = build_gold(lake, settings(), run_id="inc-6")
    assert result.fact_changes["silver_diff"] == "full"  # lines were still pending
    assert result.fact_changes["recomputed"] == 20 and result.fact_changes["publish"] == "merge"
    assert_same_gold(
        published_snapshot(lake),
        {name: warehouse_table(lake, name, ORDER_BY[name]) for name in GOLD_TABLES},
        "published",
    )
    # published: nothing is pending any more
    assert warehouse_rows(lake, "select count(*) from intermediate.int_pending_lines") == [(0,)]
    assert warehouse_rows(lake, "select count(*) from gold_state.pending_versions") == [(0,)]


def test_full_refresh_gives_the_same_gold(incremental) -> None:
    lake, _ = incremental
    warehouse, published = gold_snapshot(lake), published_snapshot(lake)
    result = build_gold(lake, settings(), run_id="inc-full", full_refresh=True)
    assert (result.fact_changes["mode"], result.fact_changes["publish"]) == ("full", "overwrite")
    assert_same_gold(gold_snapshot(lake), warehouse, "warehouse")
    assert_same_gold(published_snapshot(lake), published, "published")
