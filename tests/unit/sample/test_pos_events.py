"""The point-of-sale event simulator: CONTRACT §6 shape, determinism and exact accounting.

Every count of the summary is recomputed here from the raw messages with a strict checker
of CONTRACT §6 and the line rules of §4 and §7, written without the simulator's internals.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

import pyarrow as pa
import pytest

from saleslake.config import FraudSettings, StreamSettings
from saleslake.errors import UserError
from saleslake.reference import PRODUCTS_SCHEMA, STORES_SCHEMA
from saleslake.sample.csv_export import REGIONS, generate_csv, master_data
from saleslake.sample.pos_events import (
    BLOCK_EVENTS,
    CURRENCY_BY_COUNTRY,
    REFERENCE_UPDATED_AT,
    PosSimulator,
    reference_tables,
    wall_clock_time,
)

SEED = 11
EVENTS = 20_000  # more than two blocks
START = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
FRAUD = FraudSettings()
STREAM = StreamSettings()
CURRENCIES = set(STREAM.currencies)
TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
HEX_RE = re.compile(r"[0-9a-f]{16,64}")
STORE_RE = re.compile(r"ST-\d{4}")
MONEY_RE = re.compile(r"-?\d+\.\d{2,4}")
TOP_FIELDS = ("schema", "event_id", "transaction_id", "event_time", "store_id", "terminal_id", "customer_id",
              "currency", "payment_method", "card_fingerprint", "lines")  # fmt: skip
LINE_FIELDS = ("line_no", "product_id", "quantity", "unit_price", "discount")


# ---------------------------------------------------------------------------------------
# An independent, strict reader of CONTRACT §6 (message level) and §4 (line level)
# ---------------------------------------------------------------------------------------


class Violation(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _time(value: object) -> datetime:
    if not isinstance(value, str) or not TIME_RE.fullmatch(value):
        raise Violation("schema_violation:event_time")
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        raise Violation("schema_violation:event_time") from None


def _money(value: object, field: str) -> Decimal:
    if not isinstance(value, str) or not MONEY_RE.fullmatch(value):
        raise Violation(f"schema_violation:{field}")
    try:
        return Decimal(value)
    except InvalidOperation:
        raise Violation(f"schema_violation:{field}") from None


def parse_message(raw: bytes, max_bytes: int = STREAM.max_message_bytes) -> dict:
    """The event of a well-formed message, or Violation with the message-level reason."""
    if len(raw) > max_bytes:
        raise Violation("oversized_message")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise Violation("invalid_json") from None
    if not isinstance(doc, dict):
        raise Violation("schema_violation:event")
    for name in TOP_FIELDS:
        if name not in doc:
            raise Violation(f"schema_violation:{name}")
    if set(doc) != set(TOP_FIELDS):
        raise Violation("schema_violation:unknown_field")
    if doc["schema"] != "pos.sale.v1":
        raise Violation("schema_violation:schema")
    for name in ("event_id", "transaction_id"):
        if not isinstance(doc[name], str) or not HEX_RE.fullmatch(doc[name]):
            raise Violation(f"schema_violation:{name}")
    doc["_time"] = _time(doc["event_time"])
    if not isinstance(doc["store_id"], str) or not STORE_RE.fullmatch(doc["store_id"]):
        raise Violation("schema_violation:store_id")
    if not isinstance(doc["terminal_id"], str) or not re.fullmatch(r"T\d+", doc["terminal_id"]):
        raise Violation("schema_violation:terminal_id")
    if doc["customer_id"] is not None and not (
        isinstance(doc["customer_id"], str) and re.fullmatch(r"[A-Z]{2}-\d{5}", doc["customer_id"])
    ):
        raise Violation("schema_violation:customer_id")
    if doc["currency"] not in CURRENCIES:
        raise Violation("schema_violation:currency")
    if doc["payment_method"] not in ("card", "cash", "mobile", "gift_card"):
        raise Violation("schema_violation:payment_method")
    fp = doc["card_fingerprint"]
    if (doc["payment_method"] == "cash") != (fp is None) or (
        fp is not None and not (isinstance(fp, str) and HEX_RE.fullmatch(fp))
    ):
        raise Violation("schema_violation:card_fingerprint")
    if not isinstance(doc["lines"], list) or not doc["lines"]:
        raise Violation("schema_violation:lines")
    for n, line in enumerate(doc["lines"], start=1):
        if not isinstance(line, dict) or set(line) != set(LINE_FIELDS):
            raise Violation("schema_violation:lines")
        if line["line_no"] != n or type(line["line_no"]) is not int:
            raise Violation("schema_violation:lines.line_no")
        if not isinstance(line["product_id"], str) or not re.fullmatch(r"[A-Z]{3}-[A-Z]{2}-\d{8}", line["product_id"]):
            raise Violation("schema_violation:lines.product_id")
        if type(line["quantity"]) is not int:
            raise Violation("schema_violation:lines.quantity")
        line["_price"] = _money(line["unit_price"], "lines.unit_price")
        line["_discount"] = _money(line["discount"], "lines.discount")
    return doc


def line_reasons(line: dict) -> list[str]:
    """CONTRACT §4 reasons of one line of a well-formed event (the simulator's convention:
    quantity <= 0 is non_positive_quantity, a unit price <= 0 is non_positive_sales)."""
    reasons = []
    if line["quantity"] <= 0:
        reasons.append("non_positive_quantity")
    if line["_price"] <= 0:
        reasons.append("non_positive_sales")
    if not Decimal(0) <= line["_discount"] <= Decimal(1):
        reasons.append("discount_out_of_range")
    return reasons


def recount(messages: list[tuple[bytes, bytes]]) -> dict:
    """Everything the summary claims, from the raw messages alone."""
    out: dict = {"malformed": Counter(), "lines": 0, "bad": Counter(), "bad_lines": 0, "valid": 0, "sales": Decimal(0),
                 "rule_amount": 0, "rule_hd": 0, "docs": [], "events_with_bad": 0}  # fmt: skip
    for key, value in messages:
        try:
            doc = parse_message(value)
        except Violation as v:
            out["malformed"][v.reason] += 1
            continue
        assert key == doc["store_id"].encode()
        out["docs"].append(doc)
        out["lines"] += len(doc["lines"])
        had_bad = False
        for line in doc["lines"]:
            reasons = line_reasons(line)
            assert len(reasons) <= 1, line  # one defect per bad line
            if reasons:
                had_bad = True
                out["bad"][reasons[0]] += 1
                out["bad_lines"] += 1
                continue
            gross = line["quantity"] * line["_price"]
            out["valid"] += 1
            out["sales"] += gross
            out["rule_amount"] += gross > FRAUD.amount_threshold
            out["rule_hd"] += line["_discount"] >= FRAUD.high_discount and gross > FRAUD.high_discount_amount
        out["events_with_bad"] += had_bad
    return out


# ---------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def simulated() -> tuple[list[tuple[bytes, bytes]], object]:
    sim = PosSimulator(seed=SEED, catalog_seed=SEED, error_rate=0.05, fraud_rate=0.03, start_time=START)
    return sim.generate(EVENTS)


@pytest.fixture(scope="module")
def counted(simulated) -> dict:
    return recount(simulated[0])


# ---------------------------------------------------------------------------------------
# Shape
# ---------------------------------------------------------------------------------------


def test_a_clean_run_is_entirely_valid_contract_events() -> None:
    messages, summary = PosSimulator(seed=3, error_rate=0.0, fraud_rate=0.0).generate(3_000)
    assert len(messages) == 3_000 == summary.events
    docs = [parse_message(v) for _, v in messages]  # raises on any violation
    assert all(not line_reasons(line) for d in docs for line in d["lines"])
    assert summary.malformed_messages == summary.defective_lines == summary.fraud_events == 0
    assert summary.valid_lines == sum(len(d["lines"]) for d in docs)
    # wall-clock event times: now, in order of generation
    now = datetime.now(UTC)
    times = [d["_time"] for d in docs]
    assert all(now - timedelta(seconds=60) <= t <= now + timedelta(seconds=1) for t in times)
    assert times == sorted(times)
    # field order as in CONTRACT §6, compact JSON
    assert messages[0][1].startswith(b'{"schema":"pos.sale.v1","event_id":"')
    assert list(json.loads(messages[0][1])) == list(TOP_FIELDS)


def test_money_is_always_a_decimal_string(simulated) -> None:
    messages, summary = simulated
    floats = 0
    for _, value in messages:
        try:
            json.loads(value)
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue  # truncated or binary: no values to speak of
        for m in re.finditer(rb'"(unit_price|discount)":([^,}]*)', value):
            if not m.group(2).startswith(b'"'):
                floats += 1
                assert m.group(1) == b"unit_price"
    assert floats == summary.malformed_by_kind["unit_price_float"] > 0


def test_events_look_like_real_sales(counted) -> None:
    docs = counted["docs"]
    lines = [line for d in docs for line in d["lines"] if not line_reasons(line)]
    basket = Counter(len(d["lines"]) for d in docs)
    assert basket[1] > basket[3] > basket[6] > 0 and max(basket) <= 10
    qty = Counter(line["quantity"] for line in lines)
    assert qty[1] / len(lines) > 0.6 and sum(v for k, v in qty.items() if k > 6) / len(lines) < 0.02
    walk_in = sum(d["customer_id"] is None for d in docs) / len(docs)
    assert 0.35 < walk_in < 0.50
    pay = Counter(d["payment_method"] for d in docs)
    assert set(pay) == {"card", "cash", "mobile", "gift_card"} and pay["card"] > pay["cash"] > pay["gift_card"]
    stores = Counter(d["store_id"] for d in docs)
    assert len(stores) > 100
    terminals = defaultdict(set)
    for d in docs:
        terminals[d["store_id"]].add(d["terminal_id"])
    assert max(len(t) for t in terminals.values()) >= 4
    # a member's card keeps its fingerprint
    cards = defaultdict(set)
    for d in docs:
        if d["customer_id"] and d["payment_method"] == "card":
            cards[d["customer_id"]].add(d["card_fingerprint"])
    assert cards and all(len(fps) == 1 for fps in cards.values())


def test_simulated_time_follows_local_busy_hours() -> None:
    messages, summary = PosSimulator(seed=SEED, catalog_seed=SEED, error_rate=0.0, fraud_rate=0.0, start_time=START,
                                     sim_rate=0.25).generate(20_000)  # fmt: skip
    docs = [parse_message(v) for _, v in messages]
    assert docs[-1]["_time"] - docs[0]["_time"] > timedelta(hours=20)  # 0.25 sales per second
    stores, _ = reference_tables(SEED)
    country = dict(zip(stores["store_id"].to_pylist(), stores["country"].to_pylist()))
    offsets = {"Germany": 1, "France": 1, "India": 5.5, "Japan": 9, "United Kingdom": 0, "Brazil": -3}
    local = Counter()
    for d in docs:
        off = offsets.get(country[d["store_id"]])
        if off is not None:
            local[int((d["_time"].hour + d["_time"].minute / 60 + off) % 24)] += 1
    total = sum(local.values())
    night = sum(local[h] for h in (1, 2, 3, 4))
    midday = sum(local[h] for h in (11, 12, 13, 14))
    assert total > 2_000 and night / total < 0.02 and midday / total > 0.2
    assert summary.first_event_time == docs[0]["event_time"] >= "2026-03-02T00:00:00.000Z"
    assert summary.last_event_time == max(d["event_time"] for d in docs)


def test_sales_cluster_per_store(simulated) -> None:
    keys = [k for k, _ in simulated[0]]
    same_as_previous = sum(a == b for a, b in itertools.pairwise(keys)) / len(keys)
    assert same_as_previous > 0.3  # queues at the tills: a store's sales come in runs


# ---------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------


def test_same_seed_same_messages() -> None:
    a, sa = PosSimulator(seed=5, start_time=START).generate(BLOCK_EVENTS + 100)
    b, sb = PosSimulator(seed=5, start_time=START).generate(BLOCK_EVENTS + 100)
    c, _ = PosSimulator(seed=6, start_time=START).generate(BLOCK_EVENTS + 100)
    assert a == b and sa == sb
    assert a != c


def test_wall_clock_runs_differ_only_in_event_time() -> None:
    a, _ = PosSimulator(seed=5).generate(2_000, clock=lambda: b"2026-01-01T00:00:00.000Z")
    b, _ = PosSimulator(seed=5).generate(2_000)
    assert len(a) == len(b)
    mask = lambda v: re.sub(rb'"event_time":"\d{4}-[^"]*Z"', b'"event_time":"*"', v)  # noqa: E731
    assert [(k, mask(v)) for k, v in a] == [(k, mask(v)) for k, v in b]
    assert sum(b'"event_time":"2026-01-01T00:00:00.000Z"' in v for _, v in a) > 1_900


# ---------------------------------------------------------------------------------------
# Exact accounting
# ---------------------------------------------------------------------------------------


def test_summary_matches_an_independent_recount(simulated, counted) -> None:
    messages, s = simulated
    assert s.events == len(messages) == EVENTS
    assert dict(counted["malformed"]) == s.malformed_by_reason
    assert s.malformed_messages == sum(counted["malformed"].values())
    assert s.wellformed_messages == len(counted["docs"]) == EVENTS - s.malformed_messages
    assert s.lines == counted["lines"]
    assert s.defective_lines_by_reason == dict(counted["bad"])
    assert s.defective_lines == counted["bad_lines"]
    assert s.events_with_defective_lines == counted["events_with_bad"]
    assert s.valid_lines == counted["valid"] == s.lines - s.defective_lines
    assert Decimal(s.valid_sales) == counted["sales"]
    assert s.expected_quarantine_rows == s.malformed_messages + s.defective_lines
    assert s.valid_lines_by_rule == {"amount_above_threshold": counted["rule_amount"],
                                     "high_discount_high_amount": counted["rule_hd"]}  # fmt: skip


def test_every_defect_kind_occurs(simulated) -> None:
    s = simulated[1]
    assert set(s.malformed_by_reason) >= {
        "invalid_json", "oversized_message", "schema_violation:schema", "schema_violation:event_id",
        "schema_violation:transaction_id", "schema_violation:event_time", "schema_violation:store_id",
        "schema_violation:currency", "schema_violation:lines", "schema_violation:lines.quantity",
        "schema_violation:lines.unit_price",
    }  # fmt: skip
    assert set(s.malformed_by_kind) >= {"truncated_json", "binary", "wrong_schema", "quantity_not_integer",
                                        "unit_price_float", "unknown_currency", "bad_event_time", "empty_lines", "oversized"}  # fmt: skip
    assert set(s.defective_lines_by_reason) == {"non_positive_quantity", "non_positive_sales", "discount_out_of_range"}
    assert sum(s.malformed_by_kind.values()) == sum(s.malformed_by_reason.values()) == s.malformed_messages


def test_binary_and_oversized_messages(simulated) -> None:
    sizes = [len(v) for _, v in simulated[0]]
    big = [n for n in sizes if n > STREAM.max_message_bytes]
    assert len(big) == simulated[1].malformed_by_reason["oversized_message"]
    assert all(n < 1_000_000 for n in big)  # under the broker's default message limit
    not_utf8 = 0
    for _, v in simulated[0]:
        try:
            v.decode("utf-8")
        except UnicodeDecodeError:
            not_utf8 += 1
    assert not_utf8 == simulated[1].malformed_by_kind["binary"]


def test_a_bad_line_leaves_the_other_lines_of_its_event_valid(counted) -> None:
    mixed = [
        d
        for d in counted["docs"]
        if any(line_reasons(x) for x in d["lines"]) and not all(line_reasons(x) for x in d["lines"])
    ]
    assert len(mixed) > 50


def test_error_and_fraud_shares_are_as_asked() -> None:
    n = 40_000
    _, s = PosSimulator(seed=2, error_rate=0.02, fraud_rate=0.01).generate(n, clock=lambda: b"2026-01-01T00:00:00.000Z")
    defective_events = s.malformed_messages + s.events_with_defective_lines
    assert abs(defective_events / n - 0.02) < 0.003
    assert 0.25 < s.defective_lines / s.expected_quarantine_rows < 0.75  # both levels are well represented
    assert abs(s.fraud_events / n - 0.01) < 0.0025
    _, none = PosSimulator(seed=2, error_rate=0.0, fraud_rate=0.0).generate(
        5_000, clock=lambda: b"2026-01-01T00:00:00.000Z"
    )
    assert none.malformed_messages == none.defective_lines == none.fraud_events == 0


# ---------------------------------------------------------------------------------------
# Fraud patterns (CONTRACT §7 with the default FraudSettings)
# ---------------------------------------------------------------------------------------


def test_injected_fraud_matches_the_rules_and_natural_lines_do_not(simulated, counted) -> None:
    _, s = simulated
    by_tid = {d["transaction_id"]: d for d in counted["docs"]}
    ids = s.fraud_transaction_ids
    assert set(ids) == {"amount_above_threshold", "high_discount_high_amount", "quantity_above_norm", "velocity"}
    fraud_tids = {t for v in ids.values() for t in v}
    assert all(t in by_tid for t in fraud_tids)  # fraud events are never malformed

    def lines_of(kind: str) -> list[list[dict]]:
        return [by_tid[t]["lines"] for t in ids[kind]]

    for lines in lines_of("amount_above_threshold"):
        assert sum(x["quantity"] * x["_price"] > FRAUD.amount_threshold for x in lines) == 1
    for lines in lines_of("high_discount_high_amount"):
        hits = [
            x
            for x in lines
            if x["_discount"] >= FRAUD.high_discount and x["quantity"] * x["_price"] > FRAUD.high_discount_amount
        ]
        assert len(hits) == 1 and hits[0]["quantity"] * hits[0]["_price"] <= FRAUD.amount_threshold
    norm = FRAUD.quantity_norm_multiple
    for lines in lines_of("quantity_above_norm"):
        hits = [x for x in lines if x["quantity"] > norm * 1]
        assert len(hits) == 1 and hits[0]["quantity"] * hits[0]["_price"] <= FRAUD.amount_threshold
    # natural lines trip no line rule: the exact rule counts are the injected ones
    assert s.valid_lines_by_rule["amount_above_threshold"] == s.fraud_patterns["amount_above_threshold"]
    assert s.valid_lines_by_rule["high_discount_high_amount"] == s.fraud_patterns["high_discount_high_amount"]
    natural = [
        x for d in counted["docs"] if d["transaction_id"] not in fraud_tids for x in d["lines"] if not line_reasons(x)
    ]
    assert max(x["quantity"] for x in natural) <= 6
    assert max(x["_discount"] for x in natural) < FRAUD.high_discount
    # the anomalies sit on products with a quantity history whose median is 1
    products = Counter(x["product_id"] for x in natural)
    qty1 = Counter(x["product_id"] for x in natural if x["quantity"] == 1)
    for lines in lines_of("quantity_above_norm"):
        hit = next(x for x in lines if x["quantity"] > norm)
        assert products[hit["product_id"]] >= 20 and qty1[hit["product_id"]] * 2 > products[hit["product_id"]]


def test_velocity_bursts_exceed_the_limit_within_the_window(simulated, counted) -> None:
    _, s = simulated
    by_tid = {d["transaction_id"]: d for d in counted["docs"]}
    burst = [by_tid[t] for t in s.fraud_transaction_ids["velocity"]]
    assert len(burst) == s.velocity_transactions
    by_card = defaultdict(list)
    for d in burst:
        assert d["payment_method"] == "card" and d["customer_id"] is None
        by_card[d["card_fingerprint"]].append(d)
    assert len(by_card) == s.fraud_patterns["velocity"]
    window = timedelta(seconds=FRAUD.velocity_window_seconds)
    for group in by_card.values():
        assert len(group) > FRAUD.velocity_max_transactions
        assert len({d["store_id"] for d in group}) == 1
        times = sorted(d["_time"] for d in group)
        assert times[-1] - times[0] < window
    # no other sale uses a burst card
    cards = set(by_card)
    assert sum(d["card_fingerprint"] in cards for d in counted["docs"]) == len(burst)


# ---------------------------------------------------------------------------------------
# Shared master data: the CSV generator's catalog and customers
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def csv_ids(tmp_path_factory: pytest.TempPathFactory) -> tuple[set[str], set[str]]:
    """Product and customer ids of a default-size CSV export with the same seed."""
    out = tmp_path_factory.mktemp("csv")
    generate_csv(out, rows=100_000, seed=SEED, error_rate=0.0)
    products, customers = set(), set()
    for path in out.glob("*/*.csv"):
        text = path.read_bytes().decode("utf-8-sig")
        delimiter = ";" if text.split("\n", 1)[0].count(";") > 3 else ","
        for row in csv.DictReader(io.StringIO(text), delimiter=delimiter):
            products.add(row["Product ID"])
            customers.add(row["Customer ID"])
    return products, customers


def test_product_ids_are_the_csv_catalog(counted, csv_ids) -> None:
    csv_products, _ = csv_ids
    _, products = reference_tables(SEED)
    catalog = set(products["product_id"].to_pylist())
    assert catalog == set(master_data(SEED, rows=1_000).product_id)  # independent of the export size
    assert csv_products <= catalog and len(csv_products) > 2_000
    pos_products = {x["product_id"] for d in counted["docs"] for x in d["lines"]}
    assert pos_products <= catalog and len(pos_products & csv_products) > 1_000


def test_customers_overlap_the_csv_customers(counted, csv_ids) -> None:
    _, csv_customers = csv_ids
    pos_customers = {d["customer_id"] for d in counted["docs"] if d["customer_id"]}
    shared = pos_customers & csv_customers
    assert len(shared) > 200
    assert len(pos_customers - csv_customers) > len(shared)  # plus loyalty members of the shop only


def test_list_prices_are_the_csv_prices(counted) -> None:
    _, products = reference_tables(SEED)
    price = dict(zip(products["product_id"].to_pylist(), products["list_price"].to_pylist()))
    for d in counted["docs"][:2_000]:
        for x in d["lines"]:
            if x["_price"] > 0:
                assert x["_price"] == price[x["product_id"]]


# ---------------------------------------------------------------------------------------
# Reference data
# ---------------------------------------------------------------------------------------


def test_reference_tables_describe_real_stores() -> None:
    stores, products = reference_tables(SEED)
    assert stores.schema == STORES_SCHEMA and products.schema == PRODUCTS_SCHEMA
    rows = stores.to_pylist()
    assert len(rows) == 150 and len({r["store_id"] for r in rows}) == 150
    assert [r["store_id"] for r in rows] == [f"ST-{i:04d}" for i in range(1, 151)]
    cities = {(c.name, c.state, country.name, country.code, country.market, spec.label)
              for spec in REGIONS.values() for country in spec.countries for c in country.cities}  # fmt: skip
    labels = {r["region"] for r in rows}
    assert len(labels) == 13  # every region has a store
    for r in rows:
        code = next(c[3] for c in cities if c[0] == r["city"] and c[1] == r["state"] and c[2] == r["country"])
        assert (r["city"], r["state"], r["country"], code, r["market"], r["region"]) in cities
        assert r["currency"] == CURRENCY_BY_COUNTRY[code] and r["currency"] in CURRENCIES
        assert (
            r["channel"] == "pos"
            and r["updated_at"] == REFERENCE_UPDATED_AT
            and r["store_name"].startswith("Superstore ")
        )
    assert len({r["store_name"] for r in rows}) == 150
    assert products.num_rows == 3_000
    assert all(p > 0 for p in products["list_price"].to_pylist())
    again, _ = reference_tables(SEED)
    assert again.equals(stores)


def test_only_stores_with_an_accepted_currency_sell() -> None:
    stores, _ = reference_tables(SEED)
    assert set(stores["currency"].to_pylist()) > {"EUR", "USD"}  # the world does not depend on the settings
    stream = StreamSettings(currencies=["EUR", "USD"])
    messages, _ = PosSimulator(seed=1, catalog_seed=SEED, stream=stream, error_rate=0).generate(2_000)
    docs = [parse_message(v) for _, v in messages]
    assert {d["currency"] for d in docs} == {"EUR", "USD"}
    currency = dict(zip(stores["store_id"].to_pylist(), stores["currency"].to_pylist()))
    assert all(currency[d["store_id"]] == d["currency"] for d in docs)
    with pytest.raises(UserError, match="accepted currency"):
        PosSimulator(stream=StreamSettings(currencies=["XYZ"]))


def test_sales_seeds_share_one_world_and_differ_in_transactions() -> None:
    a, sa = PosSimulator(seed=1, error_rate=0).generate(2_000)
    b, sb = PosSimulator(seed=2, error_rate=0).generate(2_000)
    da = [parse_message(v) for _, v in a]
    db = [parse_message(v) for _, v in b]
    assert not {d["transaction_id"] for d in da} & {d["transaction_id"] for d in db}
    assert sa.catalog_seed == sb.catalog_seed == 42
    stores, products = reference_tables()  # catalog seed 42 = generate csv's default
    city = dict(zip(stores["store_id"].to_pylist(), stores["currency"].to_pylist()))
    assert all(city[d["store_id"]] == d["currency"] for d in da + db)
    catalog = set(products["product_id"].to_pylist())
    assert {x["product_id"] for d in da + db for x in d["lines"]} <= catalog
    assert catalog == set(master_data(42).product_id) != set(master_data(SEED).product_id)


def test_every_country_of_the_csv_geography_has_a_currency() -> None:
    codes = {country.code for spec in REGIONS.values() for country in spec.countries}
    assert codes <= set(CURRENCY_BY_COUNTRY)
    assert all(re.fullmatch(r"[A-Z]{3}", c) for c in CURRENCY_BY_COUNTRY.values())


# ---------------------------------------------------------------------------------------
# Settings and arguments
# ---------------------------------------------------------------------------------------


def test_thresholds_follow_the_fraud_settings() -> None:
    fraud = FraudSettings(
        amount_threshold=Decimal("300"), high_discount=Decimal("0.7"), high_discount_amount=Decimal("100")
    )
    messages, s = PosSimulator(seed=4, error_rate=0.0, fraud_rate=0.05, fraud=fraud).generate(4_000)
    docs = [parse_message(v) for _, v in messages]
    amount = sum(x["quantity"] * x["_price"] > fraud.amount_threshold for d in docs for x in d["lines"])
    hd = sum(x["_discount"] >= fraud.high_discount and x["quantity"] * x["_price"] > fraud.high_discount_amount
             for d in docs for x in d["lines"])  # fmt: skip
    assert amount == s.valid_lines_by_rule["amount_above_threshold"] == s.fraud_patterns["amount_above_threshold"] > 0
    assert hd == s.valid_lines_by_rule["high_discount_high_amount"] == s.fraud_patterns["high_discount_high_amount"] > 0


def test_oversized_follows_max_message_bytes() -> None:
    stream = StreamSettings(max_message_bytes=20_000)
    messages, s = PosSimulator(seed=4, error_rate=0.3, fraud_rate=0.0, stream=stream).generate(3_000)
    big = [v for _, v in messages if len(v) > 20_000]
    assert len(big) == s.malformed_by_reason["oversized_message"] > 0
    assert all(20_000 < len(v) < 23_000 for v in big)
    assert all(parse_message(v, max_bytes=10**9) for v in big)  # well-formed, only too big


def test_block_messages_take_the_event_time_at_send_time() -> None:
    block = next(PosSimulator(seed=1, error_rate=0.0).blocks(10))
    assert block.size == 10
    stamp = wall_clock_time()
    assert TIME_RE.fullmatch(stamp.decode())
    doc = parse_message(block.message(0, stamp))
    assert doc["event_time"] == stamp.decode()


@pytest.mark.parametrize(
    "kwargs",
    [{"error_rate": 1.5}, {"error_rate": -0.1}, {"fraud_rate": float("nan")}, {"seed": -1}, {"seed": True}],
)
def test_bad_arguments_are_user_errors(kwargs: dict) -> None:
    with pytest.raises(UserError):
        PosSimulator(**kwargs)


def test_naive_start_time_is_refused() -> None:
    with pytest.raises(UserError, match="time zone"):
        PosSimulator(start_time=datetime(2026, 1, 1))


def test_reference_rows_are_arrow_tables() -> None:
    stores, products = reference_tables()
    assert isinstance(stores, pa.Table) and isinstance(products, pa.Table)
    assert stores.num_rows == 150 and products.num_rows == 3_000
