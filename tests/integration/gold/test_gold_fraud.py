"""The history fraud rules (velocity, quantity above the product's norm), decided in gold
over all of silver (CONTRACT §7, the dbt project's macros/fraud.sql): what they flag, and
that incremental builds (late lines, corrections, removals, a build that dies before its
release) give exactly what a full build gives."""

from __future__ import annotations

import random
import shutil
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from deltalake import DeltaTable
from gold_helpers import (
    assert_same_gold,
    gold_snapshot,
    lines_table,
    published_snapshot,
    reference_history_flags,
    settings,
    silver_line,
    warehouse_rows,
    write_silver,
)

from saleslake.config import Settings
from saleslake.gold import build as gold_build
from saleslake.gold.build import build_gold
from saleslake.gold.release import latest_release
from saleslake.lake import Lake

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
D1 = date(2024, 5, 1)


def fraud_settings(**fraud) -> Settings:
    s = settings()
    return s.model_copy(update={"fraud": s.fraud.model_copy(update=fraud)})


#: velocity: more than 5 transactions in 10 minutes (the defaults); the norm: 10 × the mean
#: of at least 5 lines, from the start of the day before the sale's
SMALL = fraud_settings(quantity_norm_min_lines=5, quantity_norm_days=1)


def pos(order_id: str, at: datetime, line_id: str = "1", card: str | None = None, customer: str = "WALK-IN",
        product: str = "P-1", quantity: int = 1, source: str = "pos", **overrides) -> dict:  # fmt: skip
    """A silver line with an event time (a till sale, or an operational order)."""
    return silver_line(
        order_id,
        line_id,
        source_system=source,
        order_ts=at,
        order_date=at.astimezone(UTC).date(),
        card_fingerprint=card,
        payment_method="card" if card else "cash",
        customer_id=customer,
        product_id=product,
        quantity=quantity,
        store_id="ST-1" if source == "pos" else None,
        **overrides,
    )


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def replace_lines(lake: Lake, rows: list[dict]) -> None:
    """What silver does with corrections: replace the lines (rewriting their files)."""
    (
        DeltaTable(str(lake.sales_lines))
        .merge(lines_table(rows), predicate="t.line_key = s.line_key", source_alias="s", target_alias="t")
        .when_matched_update_all()
        .execute()
    )


def silver_rows(lake: Lake) -> list[dict]:
    return DeltaTable(str(lake.sales_lines)).to_pyarrow_table().to_pylist()


def fact_reasons(lake: Lake) -> dict[str, tuple[bool, str]]:
    """line_key -> (is_suspected_fraud, fraud_reasons) of every fact."""
    rows = warehouse_rows(lake, "select line_key, is_suspected_fraud, fraud_reasons from gold.fact_sales")
    return {key: (flag, reasons) for key, flag, reasons in rows}


def history_flags(lake: Lake) -> dict[str, list[str]]:
    """line_key -> the history reasons gold gives (lines with one only)."""
    history = ("velocity", "quantity_above_norm")
    out = {}
    for key, (_, reasons) in fact_reasons(lake).items():
        found = [r for r in reasons.split(",") if r in history]
        if found:
            out[key] = found
    return out


def flagged_orders(lake: Lake, reason: str) -> set[tuple[str, str]]:
    rows = warehouse_rows(
        lake,
        f"select order_id, line_id from gold.fact_sales where list_contains(string_split(fraud_reasons, ','), '{reason}')",
    )
    return set(rows)


def assert_gold_matches_reference(lake: Lake, s: Settings) -> None:
    assert history_flags(lake) == reference_history_flags(silver_rows(lake), s.fraud)


def full_rebuild_of(lake: Lake, tmp_path: Path, s: Settings) -> tuple[dict, dict]:
    copy = Lake(tmp_path / f"full-{len(list(tmp_path.iterdir()))}")
    shutil.copytree(lake.home, copy.home)
    result = build_gold(copy, s, run_id="full", full_refresh=True)
    assert result.fact_changes["mode"] == "full"
    return gold_snapshot(copy), published_snapshot(copy)


def assert_equals_full_rebuild(lake: Lake, tmp_path: Path, s: Settings) -> None:
    warehouse, published = full_rebuild_of(lake, tmp_path, s)
    assert_same_gold(gold_snapshot(lake), warehouse, "warehouse")
    assert_same_gold(published_snapshot(lake), published, "published")


# --------------------------------------------------------------------------- what is flagged

HAND_MADE = [
    # card fp-a: 7 transactions a minute apart (a-3 with two lines): the 6th and 7th have
    # more than 5 in the 10 minutes ending at them; a-6 is also above the amount threshold
    *(pos(f"a-{i}", minutes(i), card="fp-a") for i in range(7) if i not in (3, 6)),
    pos("a-3", minutes(3), card="fp-a"),
    pos("a-3", minutes(3), line_id="2", card="fp-a", product="P-2"),
    pos(
        "a-6",
        minutes(6),
        card="fp-a",
        sales="1500.0000",
        is_suspected_fraud=True,
        fraud_reasons=["amount_above_threshold"],
    ),
    # card fp-b: 6 transactions 3 minutes apart: never more than 4 in 10 minutes
    *(pos(f"b-{i}", minutes(3 * i), card="fp-b") for i in range(6)),
    # customer C-9 paying without a card: 5 transactions, the last two at the same instant
    # (each counts the other: both flagged); the shop's (oltp) orders of C-9 count apart
    *(pos(f"c-{i}", minutes(60 + min(i, 4)), customer="C-9") for i in range(6)),
    *(pos(f"o-{i}", minutes(60), customer="C-9", source="oltp") for i in range(2)),
    # walk-ins paying cash: no card, no customer, no velocity
    *(pos(f"w-{i}", minutes(120 + i / 10)) for i in range(8)),
    # product N-1: five lines of 2 in the morning, then 21 and (same instant, other line) 30:
    # above 10 × 2; at 11:00 the norm includes them; the next day's 200 is above 10 × the
    # mean of the day before (81 / 8); two days later nothing is recent enough
    *(pos(f"n-{i}", T0.replace(hour=9, minute=i), product="N-1", quantity=2) for i in range(5)),
    pos("n-big", T0.replace(hour=10), product="N-1", quantity=21),
    pos("n-big", T0.replace(hour=10), line_id="2", product="N-1", quantity=30),
    pos("n-later", T0.replace(hour=11), product="N-1", quantity=20),
    pos("n-next-day", T0 + timedelta(days=1, hours=-4), product="N-1", quantity=200),
    pos("n-too-late", T0 + timedelta(days=3), product="N-1", quantity=50),
    # product N-2: four lines with an event time are not enough evidence; CSV lines (a date
    # only) are neither evidence nor judged
    *(pos(f"m-{i}", T0.replace(hour=9, minute=i), product="N-2") for i in range(4)),
    pos("m-big", T0.replace(hour=10), product="N-2", quantity=50),
    *(silver_line(f"csv-{i}", product_id="N-2", order_date=D1, quantity=1) for i in range(10)),
    silver_line("csv-big", product_id="N-1", order_date=D1, quantity=1000),
]


@pytest.fixture(scope="module")
def hand_made(tmp_path_factory: pytest.TempPathFactory):
    lake = Lake(tmp_path_factory.mktemp("fraud") / "lake")
    write_silver(lake, lines_table(HAND_MADE))
    build_gold(lake, SMALL, run_id="fraud-1")
    return lake


def test_velocity_flags_the_transactions_beyond_the_limit_per_key_and_source(hand_made) -> None:
    assert flagged_orders(hand_made, "velocity") == {("a-5", "1"), ("a-6", "1"), ("c-4", "1"), ("c-5", "1")}


def test_quantity_above_the_norm_of_the_earlier_lines_within_the_lookback(hand_made) -> None:
    assert flagged_orders(hand_made, "quantity_above_norm") == {("n-big", "1"), ("n-big", "2"), ("n-next-day", "1")}


def test_fact_reasons_are_silver_line_rules_then_history_rules(hand_made) -> None:
    rows = warehouse_rows(
        hand_made,
        "select order_id, line_id, is_suspected_fraud, fraud_reasons from gold.fact_sales "
        "where order_id in ('a-4', 'a-5', 'a-6', 'n-big') order by 1, 2",
    )
    assert rows == [
        ("a-4", "1", False, ""),
        ("a-5", "1", True, "velocity"),
        ("a-6", "1", True, "amount_above_threshold,velocity"),
        ("n-big", "1", True, "quantity_above_norm"),
        ("n-big", "2", True, "quantity_above_norm"),
    ]
    assert_gold_matches_reference(hand_made, SMALL)


def test_flags_are_published_and_counted_by_the_daily_aggregate(hand_made) -> None:
    published = published_snapshot(hand_made)
    fact = published["fact_sales"].to_pylist()
    assert {r["line_key"]: (r["is_suspected_fraud"], r["fraud_reasons"]) for r in fact} == fact_reasons(hand_made)
    assert "_history" not in "".join(published["fact_sales"].column_names)
    daily = sum(r["suspected_fraud_lines"] for r in published["agg_sales_daily"].to_pylist())
    assert daily == sum(r["is_suspected_fraud"] for r in fact) == 7


def test_other_thresholds_rebuild_gold_in_full(hand_made, tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    shutil.copytree(hand_made.home, lake.home)
    strict = fraud_settings(quantity_norm_min_lines=5, quantity_norm_days=1, velocity_max_transactions=4)
    result = build_gold(lake, strict, run_id="stricter")
    assert result.fact_changes["mode"] == "full"
    assert ("a-4", "1") in flagged_orders(lake, "velocity")
    assert_gold_matches_reference(lake, strict)


# --------------------------------------------------------------------------- incremental


@pytest.fixture(scope="module")
def incremental(tmp_path_factory: pytest.TempPathFactory):
    """A lake built once in full; the tests below change its silver step by step and
    build incrementally (they run in file order and depend on each other)."""
    lake = Lake(tmp_path_factory.mktemp("fraud-incremental") / "lake")
    rows = [
        # card fp-l: 5 transactions two minutes apart: none flagged yet
        *(pos(f"l-{i}", minutes(i), card="fp-l") for i in (0, 2, 4, 6, 8)),
        # product N-5: four lines of 1, then 50: not enough evidence yet
        *(pos(f"q-{i}", T0.replace(hour=9, minute=i), product="N-5") for i in range(1, 5)),
        pos("q-big", T0.replace(hour=10), product="N-5", quantity=50),
        # product N-6: four lines of 1 on the first day, 20 the next day: not enough evidence
        *(pos(f"s-{i}", T0.replace(hour=9, minute=i), product="N-6") for i in range(1, 5)),
        pos("s-next-day", T0 + timedelta(days=1), product="N-6", quantity=20),
        # unrelated lines: other cards, products, days
        *(pos(f"x-{i}", minutes(17 * i), card=f"fp-x{i % 3}", product=f"X-{i % 4}") for i in range(30)),
    ]
    write_silver(lake, lines_table(rows))
    first = build_gold(lake, SMALL, run_id="inc-0")
    assert first.fact_changes["mode"] == "full"
    assert history_flags(lake) == {}
    return lake


def test_a_late_transaction_flags_a_later_one(incremental, tmp_path: Path) -> None:
    write_silver(incremental, lines_table([pos("l-late", minutes(1), card="fp-l")]))
    result = build_gold(incremental, SMALL, run_id="inc-1")
    assert result.fact_changes["mode"] == "incremental"
    # l-8 now has 6 transactions in its 10 minutes (0, 1, 2, 4, 6, 8): its fact is
    # recomputed with the new line, and nothing else
    assert flagged_orders(incremental, "velocity") == {("l-8", "1")}
    assert (result.fact_changes["recomputed"], result.fact_changes["deleted"]) == (2, 0)
    assert_gold_matches_reference(incremental, SMALL)
    assert_equals_full_rebuild(incremental, tmp_path, SMALL)


def test_a_removed_transaction_unflags(incremental, tmp_path: Path) -> None:
    DeltaTable(str(incremental.sales_lines)).delete("order_id = 'l-0'")
    result = build_gold(incremental, SMALL, run_id="inc-2")
    assert flagged_orders(incremental, "velocity") == set()
    assert (result.fact_changes["recomputed"], result.fact_changes["deleted"]) == (1, 1)
    assert_gold_matches_reference(incremental, SMALL)
    assert_equals_full_rebuild(incremental, tmp_path, SMALL)


def test_late_evidence_gives_a_product_its_norm(incremental, tmp_path: Path) -> None:
    """A fifth line of N-5 in the morning flags its 50 at 10:00; a fifth of N-6 on the first
    day flags its 20 of the next day (a day without any new line)."""
    late = [pos("q-early", T0.replace(hour=8), product="N-5"), pos("s-early", T0.replace(hour=8), product="N-6")]
    write_silver(incremental, lines_table(late))
    result = build_gold(incremental, SMALL, run_id="inc-3")
    assert flagged_orders(incremental, "quantity_above_norm") == {("q-big", "1"), ("s-next-day", "1")}
    assert result.fact_changes["recomputed"] == 4
    assert_gold_matches_reference(incremental, SMALL)
    assert_equals_full_rebuild(incremental, tmp_path, SMALL)


def test_a_correction_moves_the_evidence(incremental, tmp_path: Path) -> None:
    """A line corrected to another card and product: its old card and product lose it."""
    old = next(r for r in silver_rows(incremental) if r["order_id"] == "q-early")
    moved = pos("q-early", T0.replace(hour=8), product="X-1", card="fp-l", landed_seq=9)
    assert moved["line_key"] == old["line_key"]
    assert ("q-big", "1") in flagged_orders(incremental, "quantity_above_norm")
    replace_lines(incremental, [moved])
    build_gold(incremental, SMALL, run_id="inc-4")
    assert flagged_orders(incremental, "quantity_above_norm") == {("s-next-day", "1")}
    assert_gold_matches_reference(incremental, SMALL)
    assert_equals_full_rebuild(incremental, tmp_path, SMALL)


def test_flags_changed_by_a_build_that_died_before_publishing_are_published(
    incremental, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The warehouse took a flip of another line's flag, then the process died before
    anything was published: the next build (silver unchanged, the flip already in the
    warehouse) publishes it."""
    write_silver(incremental, lines_table([pos("l-late-2", minutes(3), card="fp-l")]))
    before = latest_release(incremental)

    def die(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(gold_build, "publish_delta", die)
    with pytest.raises(KeyboardInterrupt):
        build_gold(incremental, SMALL, run_id="inc-5")
    monkeypatch.undo()
    assert latest_release(incremental) == before
    # l-8 has 6 transactions again (1, 2, 3, 4, 6, 8)
    assert flagged_orders(incremental, "velocity") == {("l-8", "1")}
    build_gold(incremental, SMALL, run_id="inc-6")
    published = published_snapshot(incremental)["fact_sales"].to_pylist()
    assert {(r["order_id"], r["line_id"]) for r in published if "velocity" in r["fraud_reasons"]} == {("l-8", "1")}
    assert_gold_matches_reference(incremental, SMALL)


def test_random_late_lines_corrections_and_removals_equal_a_full_build(tmp_path: Path) -> None:
    """Seeded random steps on few cards, customers and products over three days (dense
    evidence, late lines everywhere): after each incremental build gold's flags equal the
    reference rules, and at the end the whole of gold equals a full rebuild."""
    # (a low multiple: many lines sit near the norm, so late evidence flips some)
    s = fraud_settings(quantity_norm_min_lines=4, quantity_norm_days=1, quantity_norm_multiple=Decimal("2"),
                       velocity_max_transactions=3, velocity_window_seconds=7200)  # fmt: skip
    rng = random.Random(14)
    lake = Lake(tmp_path / "lake")
    PRODUCTS = [f"P-{i}" for i in range(6)]

    def random_line(n: int, landed: int, day: int | None = None) -> dict:
        """A line on a random day of four (``day``: on that day)."""
        first, last = (0, 4) if day is None else (day, day + 1)
        return pos(
            f"r-{n}",
            T0 + timedelta(minutes=rng.randrange(first * 24 * 60, last * 24 * 60, 3)),
            card=rng.choice([None, "fp-1", "fp-2"]),
            customer=rng.choice(["WALK-IN", "C-1", "C-2"]),
            product=rng.choice(PRODUCTS),
            quantity=rng.choices([1, 2, 3, 5, 8, 13], weights=[30, 25, 20, 12, 8, 5])[0],
            source=rng.choice(["pos", "pos", "pos", "oltp"]),
            landed_seq=landed,
        )

    rows = [random_line(n, 0) for n in range(300)]
    write_silver(lake, lines_table(rows))
    build_gold(lake, s, run_id="r-0")
    assert_gold_matches_reference(lake, s)
    flagged = history_flags(lake)
    assert len(flagged) > 5 and {r for reasons in flagged.values() for r in reasons} == {
        "velocity",
        "quantity_above_norm",
    }
    n = len(rows)
    for step in range(1, 5):
        # late lines of one day (an export landed late), removals, corrections anywhere
        day = rng.randrange(4)
        new = [random_line(n + i, step, day) for i in range(8)]
        n += len(new)
        write_silver(lake, lines_table(new))
        table = DeltaTable(str(lake.sales_lines))
        current = silver_rows(lake)
        gone = rng.sample(sorted(r["order_id"] for r in current), 2)
        table.delete("order_id in (" + ", ".join(f"'{o}'" for o in gone) + ")")
        corrected = [
            pos(
                r["order_id"],
                r["order_ts"] + timedelta(minutes=rng.choice([-30, 5, 90])),
                card=r["card_fingerprint"],
                customer=r["customer_id"],
                product=rng.choice(PRODUCTS),
                quantity=rng.choice([1, 13]),
                source=r["source_system"],
                landed_seq=step,
            )
            for r in rng.sample([r for r in current if r["order_id"] not in gone], 2)
        ]
        replace_lines(lake, corrected)
        result = build_gold(lake, s, run_id=f"r-{step}")
        assert result.fact_changes["mode"] == "incremental"
        assert_gold_matches_reference(lake, s)
    assert_equals_full_rebuild(lake, tmp_path, s)


def test_lines_without_an_event_time_cost_nothing(tmp_path: Path) -> None:
    """A lake of CSV lines only: nothing is judged, no line is flagged by history."""
    lake = Lake(tmp_path / "lake")
    write_silver(lake, lines_table([silver_line(f"o-{i}", quantity=1 + 99 * (i == 30)) for i in range(40)]))
    build_gold(lake, SMALL, run_id="csv")
    assert warehouse_rows(lake, "select count(*) from intermediate.int_fraud_lines") == [(0,)]
    assert history_flags(lake) == {}


def test_duckdb_and_the_reference_agree_on_exact_norm_arithmetic(tmp_path: Path) -> None:
    """The norm compares quantity × lines with multiple × total exactly: a quantity exactly
    at 2.5 × the mean is not above it, one more is."""
    s = fraud_settings(quantity_norm_min_lines=3, quantity_norm_multiple=Decimal("2.5"))
    lake = Lake(tmp_path / "lake")
    base = [pos(f"e-{i}", minutes(i), product="E-1", quantity=q) for i, q in enumerate((1, 2, 3))]
    write_silver(lake, lines_table([*base, pos("at", minutes(10), product="E-1", quantity=5),
                                    pos("above", minutes(10), product="E-1", quantity=6, line_id="2")]))  # fmt: skip
    build_gold(lake, s, run_id="exact")
    assert flagged_orders(lake, "quantity_above_norm") == {("above", "2")}
    assert_gold_matches_reference(lake, s)


def test_fact_columns(hand_made) -> None:
    con = duckdb.connect(str(hand_made.warehouse), read_only=True)
    try:
        columns = con.sql("select * from gold.fact_sales limit 0").columns
    finally:
        con.close()
    assert columns.index("fraud_reasons") == columns.index("is_suspected_fraud") + 1
