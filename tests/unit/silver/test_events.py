"""Point-of-sale events → silver through the stream worker, without a broker: records are
handed to :class:`saleslake.pipeline.stream.StreamWorker` as Kafka would deliver them, and land in
real Delta tables."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pyarrow as pa
import pytest

from helpers import sql
from saleslake import reference
from saleslake.lake import Lake
from saleslake.pipeline.stream import StreamWorker
from saleslake.sources.kafka import RECORDS_SCHEMA

TOPIC = "pos.sales"


def event(n: int, lines: list[dict] | None = None, **fields) -> dict:
    body = {
        "schema": "pos.sale.v1",
        "event_id": f"e-{n}",
        "transaction_id": f"t-{n}",
        "event_time": "2026-11-20T10:00:00.000Z",
        "store_id": "ST-0001",
        "terminal_id": "T1",
        "customer_id": "CG-1",
        "currency": "EUR",
        "payment_method": "card",
        "card_fingerprint": f"fp-{n}",
        "lines": lines
        if lines is not None
        else [
            {"line_no": 1, "product_id": "P-1", "quantity": 2, "unit_price": "10.00", "discount": "0.00"},
            {"line_no": 2, "product_id": "P-2", "quantity": 1, "unit_price": "25.00", "discount": "0.10"},
        ],
    }
    body.update(fields)
    return body


def records(values: list, partition: int = 0, first_offset: int = 0) -> pa.Table:
    """Kafka records carrying ``values`` (dicts become JSON, bytes stay as they are)."""
    raw = [v if isinstance(v, bytes) else json.dumps(v).encode() for v in values]
    n = len(raw)
    return pa.table(
        {
            "topic": [TOPIC] * n,
            "partition": pa.array([partition] * n, pa.int32()),
            "offset": pa.array(range(first_offset, first_offset + n), pa.int64()),
            "key": [b"ST-0001"] * n,
            "timestamp": pa.array([datetime(2026, 11, 20, 10, 0, 1, tzinfo=UTC)] * n, pa.timestamp("ms", tz="UTC")),
            "value": raw,
        },
        schema=RECORDS_SCHEMA,
    )


def register_test_reference(lake) -> None:
    """One store (Lyon) and two products (P-1, P-2) in the lake's reference tables."""
    reference.register(
        lake,
        reference.STORES,
        pa.table(
            {
                "store_id": ["ST-0001"],
                "store_name": ["Lyon Part-Dieu"],
                "channel": ["pos"],
                "city": ["Lyon"],
                "state": ["Auvergne-Rhône-Alpes"],
                "country": ["France"],
                "postal_code": ["69003"],
                "region": ["Central"],
                "market": ["EU"],
                "currency": ["EUR"],
                "updated_at": [datetime(2020, 1, 1, tzinfo=UTC)],
                "source_system": ["test"],
            }
        ),
    )
    reference.register(
        lake,
        reference.PRODUCTS,
        pa.table(
            {
                "product_id": ["P-1", "P-2"],
                "product_name": ["Stapler", "Desk"],
                "category": ["Office Supplies", "Furniture"],
                "sub_category": ["Fasteners", "Tables"],
                "list_price": [Decimal("10"), Decimal("25")],
                "updated_at": [datetime(2020, 1, 1, tzinfo=UTC)] * 2,
                "source_system": ["test"] * 2,
            }
        ),
    )


@pytest.fixture
def worker(settings, lake):
    settings = settings.model_copy(update={"tax": settings.tax.model_copy(update={"flat_rate": Decimal("0.085")})})
    register_test_reference(lake)
    w = StreamWorker(lake, settings, "test-run")
    yield w
    w.close()


def lines(lake) -> list[tuple]:
    return sql(
        lake,
        "SELECT order_id, line_id, quantity, sales, tax_amount, customer_id, city, product_name, "
        "source_position FROM silver.sales_lines ORDER BY order_id, line_id",
    )


def quarantined(lake) -> list[tuple]:
    return sql(lake, "SELECT source_position, reasons FROM silver.quarantine ORDER BY source_position")


def test_a_valid_event_becomes_enriched_lines(worker, lake):
    counts = worker.process(records([event(1)]))
    assert (counts.rows_read, counts.rows_valid, counts.rows_quarantined, counts.rows_duplicate) == (2, 2, 0, 0)
    assert lines(lake) == [
        ("t-1", "1", 2, Decimal("20.0000"), Decimal("1.7000"), "CG-1", "Lyon", "Stapler", "kafka:pos.sales/0@0"),
        # 25.00 × (1 − 0.10) × 8.5 % = 1.9125 → 1.91 (half-up to cents)
        ("t-1", "2", 1, Decimal("25.0000"), Decimal("1.9100"), "CG-1", "Lyon", "Desk", "kafka:pos.sales/0@0"),
    ]
    row = sql(
        lake,
        "SELECT source_system, order_date, order_ts, ship_date, store_id, payment_method, unit_price, "
        "landed_seq FROM silver.sales_lines WHERE line_id = '2'",
    )[0]
    assert row[0] == "pos" and str(row[1]) == "2026-11-20" and row[2].hour == 10 and row[3] == row[1]
    assert row[4:] == ("ST-0001", "card", Decimal("25.0000"), 0)


def test_tax_half_up_matches_the_contract_example(worker, lake):
    worker.process(
        records(
            [
                event(
                    1,
                    lines=[
                        {"line_no": 1, "product_id": "P-1", "quantity": 1, "unit_price": "25.00", "discount": "0.00"}
                    ],
                )
            ]
        )
    )
    assert sql(lake, "SELECT tax_amount FROM silver.sales_lines") == [(Decimal("2.1300"),)]


def test_walk_in_customer(worker, lake):
    worker.process(records([event(1, customer_id=None, card_fingerprint=None, payment_method="cash")]))
    assert set(sql(lake, "SELECT customer_id, customer_name, segment FROM silver.sales_lines")) == {
        ("WALK-IN", "Walk-in customer", "Walk-in")
    }


MALFORMED = [
    (b"\xff\xfe not json", ["invalid_json"]),
    (b'{"schema": "pos.sale.v1", "lines": [', ["invalid_json"]),
    (b"[1, 2, 3]", ["invalid_json"]),
    (event(1, schema="pos.sale.v0"), ["schema_violation:schema"]),
    (event(2, currency="XXX"), ["schema_violation:currency"]),
    (event(3, event_time="2026-11-20 10:00:00"), ["schema_violation:event_time"]),
    (event(4, lines=[]), ["schema_violation:lines"]),
    (event(5, customer_id=42), ["schema_violation:customer_id"]),
    (event(10, customer_id="CG-\x00"), ["schema_violation:customer_id"]),  # NUL: no warehouse can hold it
    (event(11, transaction_id="T-\x1f1"), ["schema_violation:transaction_id"]),  # the line key's separator
    (
        event(6, lines=[{"line_no": 1, "product_id": "P-1", "quantity": 1, "unit_price": 10.5, "discount": "0"}]),
        ["schema_violation:lines.unit_price"],
    ),
    (
        event(7, lines=[{"line_no": 1, "product_id": "P-1", "quantity": "two", "unit_price": "1", "discount": "0"}]),
        ["schema_violation:lines.quantity"],
    ),
    (
        event(
            8,
            lines=[
                {"line_no": 1, "product_id": "P-1", "quantity": 1, "unit_price": "1", "discount": "0"},
                {"line_no": 1, "product_id": "P-2", "quantity": 1, "unit_price": "1", "discount": "0"},
            ],
        ),
        ["schema_violation:lines.line_no"],
    ),
]


def test_malformed_messages_are_quarantined_whole_with_raw_bytes(worker, lake):
    missing = event(9)
    del missing["transaction_id"]
    values = [v for v, _ in MALFORMED] + [missing, b"x" * 300_000]
    expected = [r for _, r in MALFORMED] + [["schema_violation:transaction_id"], ["oversized_message"]]
    counts = worker.process(records(values))
    assert counts.rows_quarantined == len(values) and counts.rows_valid == 0
    got = dict(sql(lake, "SELECT landed_seq, reasons FROM silver.quarantine"))
    assert got == {i: r for i, r in enumerate(expected)}
    raw = dict(sql(lake, "SELECT landed_seq, raw_bytes FROM silver.quarantine"))
    assert raw[0] == b"\xff\xfe not json" and len(raw[len(values) - 1]) == 300_000
    # the text too, when it is readable and not oversized
    text = dict(sql(lake, "SELECT landed_seq, raw_line FROM silver.quarantine"))
    assert text[0] is None and text[len(values) - 1] is None
    assert text[len(values) - 2] == json.dumps(missing)
    assert sql(lake, "SELECT count(*) FROM silver.sales_lines") == [(0,)]


def test_line_level_defects_quarantine_only_that_line(worker, lake):
    bad = event(
        1,
        lines=[
            {"line_no": 1, "product_id": "P-1", "quantity": 0, "unit_price": "-1.00", "discount": "0"},
            {"line_no": 2, "product_id": "P-1", "quantity": 1, "unit_price": "5.00", "discount": "1.5"},
            {"line_no": 3, "product_id": "P-2", "quantity": 3, "unit_price": "5.00", "discount": "0.2"},
        ],
    )
    counts = worker.process(records([bad]))
    assert (counts.rows_read, counts.rows_valid, counts.rows_quarantined) == (3, 1, 2)
    assert sql(lake, "SELECT line_id, reasons FROM silver.quarantine ORDER BY line_id") == [
        ("1", ["non_positive_quantity", "non_positive_sales"]),
        ("2", ["discount_out_of_range"]),
    ]
    assert sql(lake, "SELECT line_id, sales FROM silver.sales_lines") == [("3", Decimal("15.0000"))]


def test_each_record_lands_once_whatever_is_replayed(worker, lake):
    batch = records([event(i) for i in range(10)] + [b"garbage"])
    worker.process(batch.slice(0, 6))
    worker.process(batch)  # a replay overlapping the first batch (restart before Kafka knew)
    worker.process(batch)
    assert sql(lake, "SELECT count(*), count(DISTINCT line_key) FROM silver.sales_lines") == [(20, 20)]
    assert sql(lake, "SELECT count(*) FROM silver.quarantine") == [(1,)]
    assert sql(lake, "SELECT count(*) FROM bronze.pos_events") == [(11,)]


def test_a_crash_between_commits_is_completed_on_replay(worker, lake):
    """Bronze committed offsets 0..9, silver only 0..4: the replay fills silver alone."""
    batch = records([event(i) for i in range(10)])
    worker.process(batch.slice(0, 5))
    worker._write_bronze(batch, {0: 9}, worker.positions.read([0])["bronze"])  # the crash came after this
    counts = worker.process(batch)
    assert counts.rows_valid == 10
    assert sql(lake, "SELECT count(*) FROM silver.sales_lines") == [(20,)]
    assert sql(lake, 'SELECT count(*), count(DISTINCT "offset") FROM bronze.pos_events') == [(10, 10)]


def test_resent_transactions_are_duplicates_and_changes_are_corrections(worker, lake):
    worker.process(records([event(1), event(2)]))
    changed = event(
        2, lines=[{"line_no": 1, "product_id": "P-1", "quantity": 5, "unit_price": "10.00", "discount": "0.00"}]
    )
    counts = worker.process(records([event(1), changed], first_offset=2))
    assert (counts.rows_duplicate, counts.rows_corrected) == (2, 1)
    assert sql(lake, "SELECT order_id, line_id, quantity, landed_seq FROM silver.sales_lines ORDER BY 1, 2") == [
        ("t-1", "1", 2, 0),
        ("t-1", "2", 1, 0),
        ("t-2", "1", 5, 3),
        ("t-2", "2", 1, 1),
    ]


def test_fraud_amount_threshold_is_strict(worker, lake):
    at = event(1, lines=[{"line_no": 1, "product_id": "P-1", "quantity": 1, "unit_price": "1000.00", "discount": "0"}])
    above = event(
        2, lines=[{"line_no": 1, "product_id": "P-1", "quantity": 1, "unit_price": "1000.01", "discount": "0"}]
    )
    worker.process(records([at, above]))
    assert sql(lake, "SELECT order_id, is_suspected_fraud, fraud_reasons FROM silver.sales_lines ORDER BY 1") == [
        ("t-1", False, []),
        ("t-2", True, ["amount_above_threshold"]),
    ]


def history_events() -> list[dict]:
    """Events the history rules look at (with thresholds lowered: more than 2 transactions
    per card in 10 minutes, 10 × the norm once a product has 3 lines), a minute apart: four
    cash sales of 2 × P-1, three by card fp-x, then 40 × P-1 by card fp-y."""

    def at(i: int, **fields) -> dict:
        return event(i, event_time=f"2026-11-20T10:{i:02d}:00Z", **fields)

    def one(product: str, quantity: int) -> list[dict]:
        return [{"line_no": 1, "product_id": product, "quantity": quantity, "unit_price": "1.00", "discount": "0"}]

    cash = {"customer_id": None, "card_fingerprint": None, "payment_method": "cash"}
    return [
        *(at(i, lines=one("P-1", 2), **cash) for i in range(4)),
        *(at(i, lines=one("P-2", 1), card_fingerprint="fp-x") for i in range(4, 7)),
        at(7, lines=one("P-1", 40), card_fingerprint="fp-y"),
    ]


def low_history_thresholds(settings):
    fraud = settings.fraud.model_copy(update={"velocity_max_transactions": 2, "quantity_norm_min_lines": 3})
    return settings.model_copy(update={"fraud": fraud})


def test_silver_lines_do_not_depend_on_batches_restarts_or_arrival_order(settings, tmp_path):
    """The same events give the same silver lines (fraud flags included) in one batch, one
    event per batch with a restart half way, or with the later events arriving first."""
    settings = low_history_thresholds(settings)
    evs = history_events()

    def silver_of(name: str, deliveries: list[list[pa.Table]]) -> list[tuple]:
        lake = Lake(tmp_path / name)
        register_test_reference(lake)
        for n, batches in enumerate(deliveries):  # each list: one worker (a restart between)
            w = StreamWorker(lake, settings.model_copy(update={"home": lake.home}), f"{name}-{n}")
            try:
                for batch in batches:
                    w.process(batch)
            finally:
                w.close()
        return sql(
            lake,
            "SELECT order_id, line_id, quantity, is_suspected_fraud, fraud_reasons, row_hash "
            "FROM silver.sales_lines ORDER BY order_id, line_id",
        )

    one_batch = silver_of("one", [[records(evs)]])
    singles = [records([e], first_offset=i) for i, e in enumerate(evs)]
    assert silver_of("singles", [singles[:5], singles[5:]]) == one_batch
    late_first = [records(evs[4:], partition=1), records(evs[:4], partition=0)]
    assert silver_of("late-first", [late_first]) == one_batch
    assert len(one_batch) == len(evs)
    # silver holds the line rules only; velocity and quantity_above_norm are gold's
    # (tests/integration/gold/test_gold_fraud.py)
    assert {tuple(row[4]) for row in one_batch} == {()}


def test_bronze_events_past_retention_go_once_silver_holds_them(worker, lake):
    from datetime import timedelta

    from saleslake.retention import apply_retention

    worker.process(records([event(i) for i in range(5)]))
    later = datetime.now(UTC) + timedelta(days=91)
    assert apply_retention(lake, worker.settings).events_deleted == 0  # not old yet
    assert apply_retention(lake, worker.settings, now=later).events_deleted == 5
    assert sql(lake, "SELECT count(*) FROM bronze.pos_events") == [(0,)]
    assert sql(lake, "SELECT count(*) FROM silver.sales_lines") == [(10,)]
    # a replay of the same offsets is still recognised as done: positions live in silver
    worker.process(records([event(i) for i in range(5)]))
    assert sql(lake, "SELECT count(*) FROM bronze.pos_events") == [(0,)]


def test_event_times_outside_the_plausible_window_quarantine_the_message(worker, lake):
    """Issue 14.3 for the point-of-sale source: the lines' order date is the event's UTC
    date, held to the same window as every source's dates (quality.min_date … max_date)."""
    values = [
        event(1, event_time="9999-12-31T23:59:59Z"),
        event(2, event_time="0000-01-01T00:00:00Z"),
        event(3, event_time="2100-12-31T23:30:00-02:00"),  # 2101-01-01 in UTC
        event(4, event_time="1900-01-01T00:00:00Z"),  # the first plausible day: valid
    ]
    counts = worker.process(records(values))
    assert (counts.rows_read, counts.rows_valid, counts.rows_quarantined) == (5, 2, 3)
    assert dict(sql(lake, "SELECT landed_seq, reasons FROM silver.quarantine")) == {
        0: ["invalid_date:event_time"],
        1: ["invalid_date:event_time"],
        2: ["invalid_date:event_time"],
    }
    assert sql(lake, "SELECT DISTINCT order_date FROM silver.sales_lines") == [(date(1900, 1, 1),)]


def test_line_amounts_beyond_their_types_quarantine_the_line(worker, lake):
    """A quantity × unit price beyond DECIMAL(18,4) stopped the stream on every retry."""
    bad = event(
        1,
        lines=[
            {"line_no": 1, "product_id": "P-1", "quantity": 10, "unit_price": "99999999999999", "discount": "0"},
            {"line_no": 2, "product_id": "P-1", "quantity": 2000000000, "unit_price": "1.00", "discount": "0"},
            {"line_no": 3, "product_id": "P-2", "quantity": 1, "unit_price": "99999999999999.9999", "discount": "1"},
        ],
    )
    counts = worker.process(records([bad]))
    assert (counts.rows_read, counts.rows_valid, counts.rows_quarantined) == (3, 1, 2)
    assert sql(lake, "SELECT line_id, reasons FROM silver.quarantine ORDER BY line_id") == [
        ("1", ["invalid_number:sales"]),
        ("2", ["quantity_out_of_range"]),
    ]
    assert sql(lake, "SELECT line_id, sales, tax_amount FROM silver.sales_lines") == [
        ("3", Decimal("99999999999999.9999"), Decimal("0.0000"))
    ]
