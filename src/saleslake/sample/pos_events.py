"""Realistic, deterministic point-of-sale events (CONTRACT §6), with exact ground truth.

A chain of stores in real cities (the geography of :mod:`saleslake.sample.csv_export`,
in countries whose currency the stream accepts by default) sells the CSV generator's
product catalog to the CSV generator's customers (those of its default size, plus more
loyalty members) and to walk-ins::

    sim = PosSimulator(seed=7, error_rate=0.02, fraud_rate=0.01)
    messages, summary = sim.generate(10_000)          # [(key, value)], PosSummary
    summary.valid_lines, summary.valid_sales

Two seeds: ``catalog_seed`` (default 42, the CSV generator's default) fixes the world -
stores, products, members - so its product ids and list prices are those of
``generate csv --seed <catalog_seed>``; ``seed`` fixes the sales. Runs with other sales
seeds add new transactions to the same world (the same ``seed`` again replays the same
transaction ids); keep one catalog seed per lake, its reference data is registered once.

What the events look like:

* One event is one sale: ``pos.sale.v1`` JSON, key = ``store_id``. Baskets have 1-10
  lines (mostly 1-3), quantities 1-6, unit prices are the catalog list prices (decimal
  strings with 2-4 decimals, in the store's currency at face value, no FX), discounts
  ``"0.00"``-``"0.30"``. About 40 % of sales are walk-ins (``customer_id`` null); payment
  by card, cash (``card_fingerprint`` null), mobile wallet or gift card. A loyalty
  member's card and wallet keep their fingerprint; other payments get a fresh one.
* Stores have 2-8 terminals; sales come in small clusters per store (queues at the
  tills). ``event_time`` is the wall-clock send time (filled in by the sender, see
  :meth:`EventBlock.message`) unless ``start_time`` is given: then times are simulated
  from it, busier at the stores' local lunch and evening hours and near zero at night,
  and the messages are byte-for-byte reproducible.
* Natural lines never trip a fraud rule of :class:`FraudSettings` (amounts up to
  ``amount_threshold``, discounts below ``high_discount``, quantities within the
  product's norm), so what the rules flag (the line rules in silver, every rule in gold)
  is what ``fraud_rate`` injected (plus natural velocity when loyalty members shop very
  often, i.e. at extreme send rates).

``error_rate`` of the events are defective and ``fraud_rate`` carry a fraud pattern (the
two sets are disjoint); :class:`PosSummary` holds exact accounting of both. Same
arguments (seeds, rates, settings, number of events, start time) give the same events.
Generation is vectorised per block of :data:`BLOCK_EVENTS` events.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from saleslake.config import FraudSettings, StreamSettings
from saleslake.errors import UserError
from saleslake.sample import catalog
from saleslake.sample.csv_export import REGIONS, MasterData, _frac_table, _pick_weighted, master_data

__all__ = [
    "BLOCK_EVENTS",
    "CURRENCY_BY_COUNTRY",
    "FRAUD_KINDS",
    "LINE_DEFECTS",
    "MESSAGE_DEFECTS",
    "REFERENCE_UPDATED_AT",
    "SCHEMA",
    "EventBlock",
    "PosSimulator",
    "PosSummary",
    "PosWorld",
    "pos_world",
    "reference_tables",
    "register_reference",
]

SCHEMA = "pos.sale.v1"
BLOCK_EVENTS = 8192
DEFAULT_STORES = 150
DEFAULT_CATALOG_SEED = 42  # generate csv's default seed
# Stores are placed where these currencies are used (the stream's default accepted list),
# whatever a lake accepts, so that store ids mean the same everywhere; stores whose
# currency a lake does not accept simply make no sales there.
STORE_CURRENCIES = ("USD", "EUR", "GBP", "CAD", "AUD", "BRL", "MXN", "INR", "CNY", "JPY",
                    "ZAR", "NGN", "EGP", "TRY", "SGD", "CHF", "SEK", "PLN")  # fmt: skip
LOYALTY_MEMBERS = 50_000  # the CSV generator's customers plus new members, same id format
DEFAULT_SIM_RATE = 5.0  # simulated events per second, averaged over a day
MAX_KAFKA_MESSAGE = 900_000  # oversized messages stay under the broker's 1 MB limit
REFERENCE_UPDATED_AT = datetime(2020, 1, 1, tzinfo=UTC)
PAYMENT_METHODS = ("card", "cash", "mobile", "gift_card")

# Line-level defects (CONTRACT §4): one quarantine row per bad line, the event's other
# lines stay valid.
LINE_DEFECTS = ("non_positive_quantity", "non_positive_sales", "discount_out_of_range")
# Message-level defects: (kind, the reason code the stream gives it, relative weight).
# Each makes the whole message one quarantine row with exactly that one reason.
MESSAGE_DEFECTS = (
    ("truncated_json", "invalid_json", 7.0),
    ("binary", "invalid_json", 4.0),
    ("missing:schema", "schema_violation:schema", 1.0),
    ("missing:event_id", "schema_violation:event_id", 1.5),
    ("missing:transaction_id", "schema_violation:transaction_id", 1.5),
    ("missing:event_time", "schema_violation:event_time", 1.5),
    ("missing:store_id", "schema_violation:store_id", 1.5),
    ("missing:currency", "schema_violation:currency", 1.0),
    ("missing:lines", "schema_violation:lines", 1.0),
    ("wrong_schema", "schema_violation:schema", 3.0),
    ("quantity_not_integer", "schema_violation:lines.quantity", 5.0),
    ("unit_price_float", "schema_violation:lines.unit_price", 5.0),
    ("unknown_currency", "schema_violation:currency", 5.0),
    ("bad_event_time", "schema_violation:event_time", 5.0),
    ("empty_lines", "schema_violation:lines", 3.0),
    ("oversized", "oversized_message", 2.0),
)
LINE_DEFECT_WEIGHT = 48.0  # events with bad lines, against the message weights above (~51)
P_TWO_BAD_LINES = 0.15

# Fraud patterns (CONTRACT §7); the first three are one line each, velocity is a burst.
FRAUD_KINDS = ("amount_above_threshold", "high_discount_high_amount", "quantity_above_norm", "velocity")
_FRAUD_WEIGHTS = np.array([0.35, 0.25, 0.20, 0.20])
_BURST_EXTRA = 4  # a burst is velocity_max_transactions + 1 + [0, 4) transactions

_LINES_P = np.array([0.28, 0.22, 0.16, 0.11, 0.08, 0.05, 0.04, 0.03, 0.02, 0.01])
_QTY_P = np.array([0.70, 0.17, 0.07, 0.03, 0.02, 0.01])  # 1..6: the median is 1
_DISCOUNTS_E4 = np.array([0, 500, 1000, 1500, 2000, 2500, 3000])
_DISCOUNT_P = np.array([0.80, 0.06, 0.05, 0.03, 0.03, 0.015, 0.015])
_PAYMENT_P = np.array([0.50, 0.22, 0.21, 0.07])
P_WALK_IN = 0.40
P_CLUSTER_END = 0.55  # sales per store cluster ~ geometric, mean 1.8
_BAD_QUANTITIES = np.array([0, -1, -2, -3])
_BAD_DISCOUNTS_E4 = np.array([10_100, 12_000, 15_000, 20_000, -500, -1_000])
_BAD_EVENT_TIMES = ("2026-02-30T10:00:00.000Z", "yesterday", "", "31/12/2025 10:00", 1700000000123)
_WRONG_SCHEMAS = ("pos.sale.v2", "pos.refund.v1", "pos.sale")

# Relative sales by local hour of day (stores barely trade at night).
_HOUR_PROFILE = np.array(
    [0.02, 0.01, 0.01, 0.01, 0.01, 0.02, 0.05, 0.3, 0.6, 0.8, 1.0, 1.3,
     1.8, 1.6, 1.1, 1.0, 1.2, 1.7, 1.9, 1.5, 1.0, 0.5, 0.2, 0.05]
)  # fmt: skip

# Currencies, UTC offsets and store name suffixes: package data (saleslake/sample/data/pos.toml).
_POS_CATALOG = catalog.load("pos")
CURRENCY_BY_COUNTRY: dict[str, str] = dict(_POS_CATALOG["currency_by_country"])
# Standard-time UTC offsets in hours (no daylight saving: this only shapes busy hours).
_UTC_OFFSET: dict[str, float] = dict(_POS_CATALOG["utc_offset"]["by_country"])
_UTC_OFFSET_BY_CITY: dict[str, float] = dict(_POS_CATALOG["utc_offset"]["by_city"])  # "City|State"
_UTC_OFFSET_BY_REGION: dict[str, float] = dict(_POS_CATALOG["utc_offset"]["by_region"])  # US cities
_STORE_SUFFIXES = catalog.strings("pos", "store_suffixes")

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


# --------------------------------------------------------------------------------------
# The world: stores, products, loyalty members
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PosWorld:
    """Everything events refer to, for one catalog seed. Stores are ordered by ``store_id``;
    loyalty members are grouped by region (``member_lo``/``member_hi`` per region)."""

    seed: int
    master: MasterData
    store_id: list[str]
    store_name: list[str]
    store_city: np.ndarray
    store_country: np.ndarray
    store_region: np.ndarray
    store_currency: list[str]
    store_weight: np.ndarray
    store_terminals: np.ndarray
    store_utc_offset: np.ndarray
    member_id: list[str]
    member_lo: np.ndarray
    member_hi: np.ndarray
    member_cum: np.ndarray
    member_card_fp: np.ndarray
    member_wallet_fp: np.ndarray

    @property
    def n_stores(self) -> int:
        return len(self.store_id)

    @property
    def n_products(self) -> int:
        return len(self.master.product_id)


def pos_world(catalog_seed: int = DEFAULT_CATALOG_SEED, stores: int = DEFAULT_STORES) -> PosWorld:
    """The simulator's stores, catalog and members (cached: the same arguments are cheap)."""
    _check_seed("catalog seed", catalog_seed)
    return _world(int(catalog_seed), int(stores))


@lru_cache(maxsize=8)
def _world(seed: int, n_stores: int) -> PosWorld:
    if n_stores < 1:
        raise UserError(f"the simulator needs at least one store, got {n_stores}")
    m = master_data(seed)
    rng = np.random.default_rng([seed, 50])
    city, names = _place_stores(rng, m, n_stores)
    country = m.city_country[city]
    codes = [m.country_code[c] for c in country]
    region = m.city_region[city]
    weight = rng.lognormal(0.0, 0.5, len(city))
    offsets = np.array([
        _UTC_OFFSET_BY_CITY.get(f"{m.city_name[c]}|{m.city_state[c]}",
                                _UTC_OFFSET_BY_REGION.get(m.regions[r], 0) if code == "US" else _UTC_OFFSET.get(code, 0))
        for c, r, code in zip(city, region, codes)
    ], dtype=float)  # fmt: skip
    members = _members(np.random.default_rng([seed, 51]), m)
    return PosWorld(
        seed=seed,
        master=m,
        store_id=[f"ST-{i + 1:04d}" for i in range(len(city))],
        store_name=names,
        store_city=city,
        store_country=country,
        store_region=region,
        store_currency=[CURRENCY_BY_COUNTRY[c] for c in codes],
        store_weight=weight,
        store_terminals=np.clip(np.rint(1 + 2.5 * weight), 2, 8).astype(np.int64),
        store_utc_offset=offsets,
        **members,
    )


def _place_stores(rng: np.random.Generator, m: MasterData, n: int) -> tuple[np.ndarray, list[str]]:
    """Cities of the stores (one in the biggest eligible city of every region first, the
    rest by city and region size) and their names, ordered by region and city."""
    ok = np.array([CURRENCY_BY_COUNTRY.get(m.country_code[c]) in STORE_CURRENCIES for c in m.city_country])
    region_w = np.array([REGIONS[k].weight for k in m.regions])
    w = np.where(ok, m.city_weight * region_w[m.city_region], 0.0)
    first = [int(np.flatnonzero(ok & (m.city_region == r))[np.argmax(w[ok & (m.city_region == r)])])
             for r in range(len(m.regions)) if (ok & (m.city_region == r)).any()]  # fmt: skip
    first = first[:n]
    rest = rng.choice(len(w), size=n - len(first), p=w / w.sum()) if n > len(first) else np.zeros(0, dtype=np.int64)
    city = np.sort(np.concatenate([np.array(first, dtype=np.int64), rest]), kind="stable")
    names: list[str] = []
    seen: dict[int, int] = {}
    for c in city:
        k = seen.get(int(c), 0)
        seen[int(c)] = k + 1
        suffix = _STORE_SUFFIXES[k % len(_STORE_SUFFIXES)] + (
            f" {k // len(_STORE_SUFFIXES) + 1}" if k >= len(_STORE_SUFFIXES) else ""
        )
        names.append(f"Superstore {m.city_name[c]} {suffix}")
    return city, names


def _members(rng: np.random.Generator, m: MasterData) -> dict[str, Any]:
    """Loyalty members: the CSV customers (so POS and CSV share customers) plus new members
    with ids of the same form (two initials, five digits, numbers not taken)."""
    n_csv = len(m.customer_id)
    extra = max(LOYALTY_MEMBERS - n_csv, 0)
    taken = np.array([int(c.split("-")[1]) for c in m.customer_id])
    free = np.setdiff1d(np.arange(10_000, 100_000), taken)
    extra = min(extra, len(free))
    numbers = rng.choice(free, size=extra, replace=False)
    initials = np.array([c.split("-")[0] for c in m.customer_id])
    region_w = np.array([REGIONS[k].weight for k in m.regions])
    ids = m.customer_id + [f"{i}-{n}" for i, n in zip(rng.choice(initials, size=extra), numbers)]
    region = np.concatenate([m.customer_region, rng.choice(len(m.regions), size=extra, p=region_w / region_w.sum())])
    activity = np.concatenate([m.customer_activity, rng.lognormal(0.0, 0.8, extra)])
    order = np.argsort(region, kind="stable")
    counts = np.bincount(region, minlength=len(m.regions))
    return {
        "member_id": [ids[i] for i in order],
        "member_lo": np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64),
        "member_hi": np.cumsum(counts).astype(np.int64),
        "member_cum": np.cumsum(activity[order]),
        "member_card_fp": rng.integers(0, 2**64, size=len(ids), dtype=np.uint64),
        "member_wallet_fp": rng.integers(0, 2**64, size=len(ids), dtype=np.uint64),
    }


# --------------------------------------------------------------------------------------
# Reference data
# --------------------------------------------------------------------------------------


def reference_tables(
    catalog_seed: int = DEFAULT_CATALOG_SEED, stores: int = DEFAULT_STORES
) -> tuple[pa.Table, pa.Table]:
    """The simulator's stores and products as rows of ``reference.STORES`` and
    ``reference.PRODUCTS``, all with ``updated_at`` = :data:`REFERENCE_UPDATED_AT` so that
    registering them again is a no-op."""
    from saleslake.reference import PRODUCTS_SCHEMA, STORES_SCHEMA

    w = pos_world(catalog_seed, stores)
    m = w.master
    n = w.n_stores
    store_rows = {
        "store_id": w.store_id,
        "store_name": w.store_name,
        "channel": ["pos"] * n,
        "city": [m.city_name[c] for c in w.store_city],
        "state": [m.city_state[c] for c in w.store_city],
        "country": [m.country_name[c] for c in w.store_country],
        "postal_code": [m.city_postal[c] or None for c in w.store_city],
        "region": [m.region_labels[r] for r in w.store_region],
        "market": [m.country_market[c] for c in w.store_country],
        "currency": w.store_currency,
        "updated_at": [REFERENCE_UPDATED_AT] * n,
        "source_system": ["pos"] * n,
    }
    p = w.n_products
    product_rows = {
        "product_id": m.product_id,
        "product_name": m.product_name,
        "category": m.category,
        "sub_category": m.sub_category,
        "list_price": [Decimal(int(v)).scaleb(-4) for v in m.list_price_e4],
        "updated_at": [REFERENCE_UPDATED_AT] * p,
        "source_system": ["pos"] * p,
    }
    return pa.table(store_rows, schema=STORES_SCHEMA), pa.table(product_rows, schema=PRODUCTS_SCHEMA)


def register_reference(lake, catalog_seed: int = DEFAULT_CATALOG_SEED, stores: int = DEFAULT_STORES) -> tuple[int, int]:
    """Register the simulator's stores and products in the lake; returns how many rows of
    each were new (0, 0 the second time)."""
    from saleslake.reference import PRODUCTS, STORES, register

    store_rows, product_rows = reference_tables(catalog_seed, stores)
    return register(lake, STORES, store_rows), register(lake, PRODUCTS, product_rows)


# --------------------------------------------------------------------------------------
# Accounting
# --------------------------------------------------------------------------------------

_KIND_NAMES = tuple(k for k, _, _ in MESSAGE_DEFECTS)
_KIND_REASONS = tuple(r for _, r, _ in MESSAGE_DEFECTS)
_KIND_INDEX = {k: i for i, k in enumerate(_KIND_NAMES)}


@dataclass
class PosSummary:
    """What was sent, and exactly what a correct consumer must end up with.

    Message level: ``malformed_messages`` messages are each one quarantine row with one
    reason (``malformed_by_reason``, keyed by the stream's codes: ``invalid_json``,
    ``oversized_message`` above ``stream.max_message_bytes``, ``schema_violation:<field>``
    with ``lines.<field>`` for a bad line field; ``malformed_by_kind`` says what exactly
    was broken). Every other message is well-formed and holds ``lines`` lines: of those,
    ``defective_lines`` are each one quarantine row (``defective_lines_by_reason``, CONTRACT
    §4 codes; a line with quantity <= 0 also has a gross amount <= 0) and ``valid_lines``
    become silver rows whose gross sales (quantity x unit_price) sum to ``valid_sales``.
    So silver gets ``valid_lines`` rows and quarantine ``expected_quarantine_rows`` =
    ``malformed_messages + defective_lines`` rows.

    Fraud: ``fraud_patterns`` counts injected patterns (lines for the three line rules,
    bursts for velocity; ``velocity_transactions`` events in those bursts) and
    ``fraud_transaction_ids`` names their transactions. ``valid_lines_by_rule`` is the
    exact number of valid lines the two line-local rules flag (natural and injected), in
    silver's and in gold's ``fraud_reasons``. The history rules are gold's (CONTRACT §7):
    with simulated time (distinct event times in a burst), gold flags exactly
    ``velocity_transactions - fraud.velocity_max_transactions * fraud_patterns["velocity"]``
    burst transactions (the ones past the limit; natural velocity needs extreme rates),
    and ``quantity_above_norm`` only on injected bulk lines whose product has
    ``fraud.quantity_norm_min_lines`` lines before them in the lookback (natural quantities
    never reach it).

    Counts cover the events handed to the producer; ``delivery_errors`` of them did not
    reach Kafka (the figures above then overstate what is in the topic).
    """

    seed: int
    error_rate: float
    fraud_rate: float
    catalog_seed: int = DEFAULT_CATALOG_SEED
    events: int = 0
    malformed_messages: int = 0
    malformed_by_reason: dict[str, int] = field(default_factory=dict)
    malformed_by_kind: dict[str, int] = field(default_factory=dict)
    wellformed_messages: int = 0
    lines: int = 0
    defective_lines: int = 0
    defective_lines_by_reason: dict[str, int] = field(default_factory=dict)
    events_with_defective_lines: int = 0
    valid_lines: int = 0
    valid_sales: str = "0"
    expected_quarantine_rows: int = 0
    fraud_events: int = 0
    fraud_patterns: dict[str, int] = field(default_factory=dict)
    velocity_transactions: int = 0
    valid_lines_by_rule: dict[str, int] = field(default_factory=dict)
    fraud_transaction_ids: dict[str, list[str]] = field(default_factory=dict)
    first_event_time: str | None = None
    last_event_time: str | None = None
    # filled in by the producer
    topic: str | None = None
    partitions: int | None = None
    delivered: int = 0
    delivery_errors: int = 0
    interrupted: bool = False  # Ctrl-C or SIGTERM: the counts cover the events sent until then
    stopped: str | None = None  # why sending ended early (SIGINT, SIGTERM, delivery failed: ...)
    elapsed_seconds: float = 0.0
    events_per_second: float = 0.0
    stores_registered: int = 0
    products_registered: int = 0
    _sales_e4: int = field(default=0, repr=False)

    def add(self, block: EventBlock, upto: int | None = None) -> None:
        """Count the first ``upto`` events of ``block`` (all by default)."""
        k = block.size if upto is None else upto
        if k <= 0:
            return
        mal = block.malformed[:k]
        bad_mask = mal >= 0
        self.events += k
        per_kind = np.bincount(mal[bad_mask], minlength=len(_KIND_NAMES))
        for i in np.flatnonzero(per_kind):
            n = int(per_kind[i])
            _bump(self.malformed_by_kind, _KIND_NAMES[i], n)
            _bump(self.malformed_by_reason, _KIND_REASONS[i], n)
        self.malformed_messages += int(bad_mask.sum())
        self.wellformed_messages = self.events - self.malformed_messages
        self.lines += int(block.lines[:k].sum())
        bad = block.bad_lines[:k]
        for j, reason in enumerate(LINE_DEFECTS):
            if bad[:, j].any():
                _bump(self.defective_lines_by_reason, reason, int(bad[:, j].sum()))
        self.defective_lines += int(bad.sum())
        self.events_with_defective_lines += int((bad.sum(axis=1) > 0).sum())
        self.valid_lines = self.lines - self.defective_lines
        self._sales_e4 += int(block.valid_sales_e4[:k].sum())
        self.valid_sales = format(Decimal(self._sales_e4).scaleb(-4), "f")
        self.expected_quarantine_rows = self.malformed_messages + self.defective_lines
        fraud = block.fraud[:k]
        self.fraud_events += int((fraud >= 0).sum())
        for j, kind in enumerate(FRAUD_KINDS[:3]):
            if (fraud == j).any():
                _bump(self.fraud_patterns, kind, int((fraud == j).sum()))
        bursts = int(block.burst_start[:k].sum())
        if bursts:
            _bump(self.fraud_patterns, "velocity", bursts)
        self.velocity_transactions += int((fraud == 3).sum())
        for j, rule in enumerate(FRAUD_KINDS[:2]):
            _bump(self.valid_lines_by_rule, rule, int(block.rule_lines[:k, j].sum()))
        for at, kind_no, tid in block.fraud_ids:
            if at < k:
                self.fraud_transaction_ids.setdefault(FRAUD_KINDS[kind_no], []).append(tid)
        if block.times_ms is not None:
            first, last = block.times_ms[:k].min(), block.times_ms[:k].max()
            if self.first_event_time is None or _iso(first) < self.first_event_time:
                self.first_event_time = _iso(first)
            if self.last_event_time is None or _iso(last) > self.last_event_time:
                self.last_event_time = _iso(last)

    def to_dict(self, transaction_ids: bool = False) -> dict[str, object]:
        out = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        if not transaction_ids:
            out.pop("fraud_transaction_ids")
        return out

    def to_json(self, transaction_ids: bool = False) -> str:
        return json.dumps(self.to_dict(transaction_ids), indent=2)


def _bump(d: dict[str, int], key: str, n: int) -> None:
    d[key] = d.get(key, 0) + n


def _iso(ms: int | np.integer) -> str:
    return str(np.datetime64(int(ms), "ms")) + "Z"


# --------------------------------------------------------------------------------------
# Blocks of events
# --------------------------------------------------------------------------------------


@dataclass
class EventBlock:
    """Up to :data:`BLOCK_EVENTS` encoded events plus the per-event ground truth.

    Message ``i`` is ``data[starts[i]:ends[i]]``; when ``splice[i] >= 0`` its event time is
    missing and goes in at that offset (wall-clock mode), see :meth:`message`.
    """

    size: int
    data: bytes
    starts: list[int]
    ends: list[int]
    splice: list[int]
    store: list[int]  # store index (the key) of each event
    malformed: np.ndarray  # MESSAGE_DEFECTS index, -1 for a well-formed message
    lines: np.ndarray  # lines of each well-formed message (0 for malformed ones)
    bad_lines: np.ndarray  # (events, 3): defective lines per LINE_DEFECTS reason
    valid_sales_e4: np.ndarray  # gross sales of the valid lines, ten-thousandths
    rule_lines: np.ndarray  # (events, 2): valid lines the two line-local fraud rules flag
    fraud: np.ndarray  # FRAUD_KINDS index, -1 none
    burst_start: np.ndarray  # first event of a velocity burst
    fraud_ids: list[tuple[int, int, str]]  # (event, kind, transaction_id)
    times_ms: np.ndarray | None  # simulated event times (None: wall clock)

    def message(self, i: int, event_time: bytes = b"") -> bytes:
        """Message ``i``, with ``event_time`` (``b"2026-01-02T03:04:05.678Z"``) put in when
        the block left it to the sender."""
        p = self.splice[i]
        if p < 0:
            return self.data[self.starts[i] : self.ends[i]]
        return self.data[self.starts[i] : p] + event_time + self.data[p : self.ends[i]]


def wall_clock_time() -> bytes:
    """Now, as an event time (UTC, milliseconds, ``Z``)."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.").encode() + b"%03dZ" % (now.microsecond // 1000)


class PosSimulator:
    """Deterministic point-of-sale events; see the module docstring.

    ``seed`` fixes the sales, ``catalog_seed`` the world they happen in. ``fraud`` and
    ``stream`` (settings) set the fraud thresholds the patterns aim at, the accepted
    currencies (only stores using one of them sell) and the size above which a message is
    oversized. ``start_time`` switches from wall-clock event times to simulated ones,
    ``sim_rate`` events per second on average.
    """

    def __init__(
        self,
        seed: int = 42,
        error_rate: float = 0.02,
        fraud_rate: float = 0.01,
        *,
        catalog_seed: int = DEFAULT_CATALOG_SEED,
        fraud: FraudSettings | None = None,
        stream: StreamSettings | None = None,
        start_time: datetime | None = None,
        sim_rate: float = DEFAULT_SIM_RATE,
        stores: int = DEFAULT_STORES,
    ) -> None:
        _check_share("error rate", error_rate)
        _check_share("fraud rate", fraud_rate)
        _check_seed("seed", seed)
        if not sim_rate > 0:
            raise UserError(f"the simulated event rate must be positive, got {sim_rate!r}")
        self.seed = int(seed)
        self.error_rate = float(error_rate)
        self.fraud_rate = float(fraud_rate)
        self.fraud_settings = fraud or FraudSettings()
        self.stream_settings = stream or StreamSettings()
        self.world = pos_world(catalog_seed, stores)
        self.catalog_seed = int(catalog_seed)
        accepted = set(self.stream_settings.currencies)
        selling = np.array([c in accepted for c in self.world.store_currency])
        if not selling.any():
            raise UserError(
                f"no simulated store uses an accepted currency (stream.currencies: {', '.join(sorted(accepted))})"
            )
        self.store_weight = self.world.store_weight * selling
        self.sim_rate = float(sim_rate)
        self.start_ms = None if start_time is None else _epoch_ms(start_time)
        self._prepare_catalog()
        self._prepare_defects()
        if self.start_ms is not None:
            self._prepare_clock()

    # ---- set-up -------------------------------------------------------------------------

    def _prepare_catalog(self) -> None:
        """Which products natural baskets and each fraud pattern use, for these thresholds."""
        f = self.fraud_settings
        m = self.world.master
        price = m.list_price_e4
        self.price_e4 = price
        self.thr_e4 = int(f.amount_threshold * 10_000)
        self.hd_e4 = int(f.high_discount * 10_000)
        self.hd_amount_e4 = int(f.high_discount_amount * 10_000)
        natural = np.flatnonzero(price <= self.thr_e4)
        if not len(natural):
            raise UserError(f"fraud.amount_threshold {f.amount_threshold} is below every list price")
        self.natural = natural
        self.natural_cum = np.cumsum(m.popularity[natural])
        self.max_qty = np.maximum(self.thr_e4 // price, 1)  # natural quantities keep gross <= threshold
        self.pid = pa.array(m.product_id)
        # amount_above_threshold: 1-3 of a premium product, just above the threshold
        self.amount_products = np.flatnonzero(3 * price > self.thr_e4)
        # high_discount_high_amount: 1-3 units with gross in (high_discount_amount, threshold]
        q = self.hd_amount_e4 // price + 1
        ok = (q <= 3) & (q * price <= self.thr_e4)
        self.hd_products, self.hd_qty = np.flatnonzero(ok), q[ok]
        self.hd_discounts = np.array(
            [d for d in (self.hd_e4, 6000, 7000, 7500, 8000, 9000) if self.hd_e4 <= d <= 10_000]
        )
        # quantity_above_norm: ~3x the allowed multiple of the median (1) on popular cheap products
        self.anomaly_qty_lo = int(math.ceil(float(f.quantity_norm_multiple) * 3)) + 1
        top = natural[np.argsort(-m.popularity[natural], kind="stable")]
        cheap = top[price[top] * (self.anomaly_qty_lo + 9) <= self.thr_e4]
        self.qty_products = cheap[:20]
        weights = _FRAUD_WEIGHTS * np.array([len(self.amount_products) > 0, len(self.hd_products) > 0 and len(self.hd_discounts) > 0,
                                             len(self.qty_products) > 0, True])  # fmt: skip
        self.fraud_p = weights / weights.sum()
        self.burst_min = self.fraud_settings.velocity_max_transactions + 1

    def _prepare_defects(self) -> None:
        max_bytes = self.stream_settings.max_message_bytes
        weights = np.array([LINE_DEFECT_WEIGHT, *(w for _, _, w in MESSAGE_DEFECTS)])
        if max_bytes + max_bytes // 10 + 1024 > MAX_KAFKA_MESSAGE:  # cannot be oversized and still fit in Kafka
            weights[1 + _KIND_INDEX["oversized"]] = 0.0
        self.error_p = weights / weights.sum()
        accepted = set(self.stream_settings.currencies)
        self.bad_currency = next(c for c in ("XXX", "ZZZ", "QQQ", "AAA") if c not in accepted)
        self.frac = _frac_table()
        self.frac_list: list[str] | None = None
        self.store_ids = pa.array(self.world.store_id)
        self.currency = pa.array(self.world.store_currency)
        self.member_json = pa.array([f'"{c}"' for c in self.world.member_id] + ["null"])
        self.payment = pa.array(list(PAYMENT_METHODS))

    def _prepare_clock(self) -> None:
        """Simulated time: a day profile of expected sales per UTC minute (sum over stores of
        their local-hour profile), cumulated so arrival times come from inverting it."""
        w = self.world
        minutes = np.arange(1440)
        local = np.floor((minutes[:, None] / 60.0 + w.store_utc_offset[None, :]) % 24).astype(np.int64)
        per_store = _HOUR_PROFILE[local] * self.store_weight[None, :]  # (1440, stores)
        g = per_store.sum(axis=1)
        g /= g.mean()
        self.clock_cum = np.concatenate([[0.0], np.cumsum(g * 60.0 * self.sim_rate)])  # expected events
        self.clock_day = self.clock_cum[-1]
        self.clock_secs = np.arange(1441) * 60.0
        hour_w = _HOUR_PROFILE[np.floor((np.arange(24)[:, None] + w.store_utc_offset[None, :]) % 24).astype(np.int64)]
        self.store_cum_by_hour = np.cumsum(hour_w * self.store_weight[None, :], axis=1)  # (24, stores)
        assert self.start_ms is not None  # only called with a start time
        self._u = self._lam(self.start_ms / 1000.0)

    def _lam(self, seconds: float) -> float:
        day, sec = divmod(seconds, 86_400.0)
        return day * self.clock_day + float(np.interp(sec, self.clock_secs, self.clock_cum))

    def _lam_inv(self, u: np.ndarray) -> np.ndarray:
        day, rem = np.divmod(u, self.clock_day)
        return day * 86_400.0 + np.interp(rem, self.clock_cum, self.clock_secs)

    # ---- generation ---------------------------------------------------------------------

    def new_summary(self) -> PosSummary:
        return PosSummary(self.seed, self.error_rate, self.fraud_rate, catalog_seed=self.catalog_seed)

    def blocks(self, events: int) -> Iterator[EventBlock]:
        """The ``events`` events, block by block (blocks depend only on their index, the
        arguments and, with simulated time, on the blocks before)."""
        if isinstance(events, bool) or not isinstance(events, (int, np.integer)) or events < 0:
            raise UserError(f"events must be a non-negative integer, got {events!r}")
        if self.start_ms is not None:
            self._u = self._lam(self.start_ms / 1000.0)
        for b, start in enumerate(range(0, int(events), BLOCK_EVENTS)):
            yield self._block(b, min(BLOCK_EVENTS, int(events) - start))

    def generate(
        self, events: int, clock: Callable[[], bytes] = wall_clock_time
    ) -> tuple[list[tuple[bytes, bytes]], PosSummary]:
        """All ``events`` messages as (key, value) pairs, and their summary (tests, small runs)."""
        out: list[tuple[bytes, bytes]] = []
        summary = self.new_summary()
        keys = [s.encode() for s in self.world.store_id]
        for block in self.blocks(events):
            for i in range(block.size):
                out.append((keys[block.store[i]], block.message(i, clock() if block.splice[i] >= 0 else b"")))
            summary.add(block)
        return out, summary

    def _block(self, b: int, E: int) -> EventBlock:
        rng = np.random.default_rng([self.seed, 7, b])
        fraud, burst_of, burst_start = self._choose_fraud(rng, E)
        error_kind = self._choose_errors(rng, E, fraud)
        first = np.ones(E, dtype=bool)  # first sale of a cluster at one store
        first[1:] = rng.random(E - 1) < P_CLUSTER_END
        times = self._times(rng, first, burst_of, burst_start) if self.start_ms is not None else None
        store = self._stores(rng, first, times, burst_of, burst_start)
        ev = self._sales(rng, E, store, burst_of, burst_start)
        ln = self._lines(rng, ev["n_lines"])
        self._inject_fraud(rng, fraud, ln)
        bad = self._inject_line_defects(rng, error_kind == 0, ln, E)
        malformed = np.where(error_kind > 0, error_kind - 1, -1).astype(np.int16)
        text = self._encode(ev, ln, times)
        return self._finish(rng, E, text, times, store, malformed, ev, ln, bad, fraud, burst_start)

    def _choose_fraud(self, rng: np.random.Generator, E: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fraud kind per event (-1 none); velocity bursts are runs of consecutive events."""
        fraud = np.full(E, -1, dtype=np.int8)
        burst_of = np.full(E, -1, dtype=np.int64)
        burst_start = np.zeros(E, dtype=bool)
        if self.fraud_rate <= 0 or E == 0:
            return fraud, burst_of, burst_start
        mean_burst = self.burst_min + (_BURST_EXTRA - 1) / 2
        n_b = int(rng.binomial(E, min(self.fraud_rate * self.fraud_p[3] / mean_burst, 1.0)))
        sizes = self.burst_min + rng.integers(0, _BURST_EXTRA, size=n_b)
        keep = np.cumsum(sizes) <= E
        sizes = sizes[keep]
        n_b = len(sizes)
        if n_b:
            slots = E - int(sizes.sum()) + n_b
            pos = np.sort(rng.choice(slots, size=n_b, replace=False))
            starts = pos + np.concatenate([[0], np.cumsum(sizes - 1)[:-1]])
            for k, (s, z) in enumerate(zip(starts, sizes)):
                burst_of[s : s + z] = k
            burst_start[starts] = True
            fraud[burst_of >= 0] = 3
        free = np.flatnonzero(burst_of < 0)
        n_line = min(int(rng.binomial(E, self.fraud_rate * (1 - self.fraud_p[3]))), len(free))
        if n_line:
            chosen = rng.choice(free, size=n_line, replace=False)
            p = self.fraud_p[:3] / self.fraud_p[:3].sum()
            fraud[chosen] = rng.choice(3, size=n_line, p=p)
        return fraud, burst_of, burst_start

    def _choose_errors(self, rng: np.random.Generator, E: int, fraud: np.ndarray) -> np.ndarray:
        """Error kind per event: -1 none, 0 line defects, 1 + MESSAGE_DEFECTS index."""
        kind = np.full(E, -1, dtype=np.int16)
        if self.error_rate <= 0 or E == 0:
            return kind
        free = np.flatnonzero(fraud < 0)
        n = min(int(rng.binomial(E, self.error_rate)), len(free))
        if n:
            chosen = rng.choice(free, size=n, replace=False)
            kind[chosen] = rng.choice(len(self.error_p), size=n, p=self.error_p)
        return kind

    def _times(
        self, rng: np.random.Generator, first: np.ndarray, burst_of: np.ndarray, burst_start: np.ndarray
    ) -> np.ndarray:
        """Simulated event times (ms): store clusters arrive by the day profile, sales in a
        cluster follow within seconds, a velocity burst stays inside the rule's window."""
        E = len(first)
        cluster = np.cumsum(first) - 1
        sizes = np.bincount(cluster)
        u = self._u + np.cumsum(rng.exponential(1.0, size=len(sizes)) * sizes)
        self._u = float(u[-1]) if len(u) else self._u
        start = self._lam_inv(u)
        within = np.where(first, 0.0, rng.uniform(0.5, 5.0, size=E))
        offset = np.cumsum(within)
        offset -= offset[np.flatnonzero(first)][cluster]
        t = start[cluster] + offset
        window = float(self.fraud_settings.velocity_window_seconds)
        for s in np.flatnonzero(burst_start):
            members = np.flatnonzero(burst_of == burst_of[s])
            end = members[-1] + 1
            span = (t[end] if end < E else t[members[-1]]) - t[s]
            gap = min(rng.uniform(5.0, 60.0), window / (len(members) + 1), max(span, 0.0) / len(members) or 0.001)
            t[members] = t[s] + gap * np.arange(len(members))
        return np.floor(t * 1000.0).astype(np.int64)

    def _stores(
        self,
        rng: np.random.Generator,
        first: np.ndarray,
        times: np.ndarray | None,
        burst_of: np.ndarray,
        burst_start: np.ndarray,
    ) -> np.ndarray:
        """Store of each event: clusters of consecutive sales at one store, picked by store
        size (and, with simulated time, by the store's local hour)."""
        w = self.world
        E = len(first)
        cluster = np.cumsum(first) - 1
        C = int(cluster[-1]) + 1 if E else 0
        if times is None:
            cum = np.cumsum(self.store_weight)
            pick = np.searchsorted(cum, rng.random(C) * cum[-1], side="right")
        else:
            hour = (times[first] // 3_600_000) % 24
            pick = np.zeros(C, dtype=np.int64)
            draws = rng.random(C)
            for h in np.unique(hour):
                sel = hour == h
                cum = self.store_cum_by_hour[h]
                pick[sel] = np.searchsorted(cum, draws[sel] * cum[-1], side="right")
        store = np.minimum(pick, w.n_stores - 1)[cluster]
        if burst_start.any():  # a card-testing burst hits one store
            store[burst_of >= 0] = store[np.flatnonzero(burst_start)][burst_of[burst_of >= 0]]
        return store

    def _sales(
        self, rng: np.random.Generator, E: int, store: np.ndarray, burst_of: np.ndarray, burst_start: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Event-level fields: ids, terminal, customer, payment, card fingerprint, basket size."""
        w = self.world
        in_burst = burst_of >= 0
        region = w.store_region[store]
        walk_in = (rng.random(E) < P_WALK_IN) | in_burst
        member = _pick_weighted(rng, w.member_cum, w.member_lo[region], w.member_hi[region])
        member = np.where(walk_in, len(w.member_id), member)
        pay = rng.choice(4, size=E, p=_PAYMENT_P)
        pay[in_burst] = 0
        fp = rng.integers(0, 2**64, size=E, dtype=np.uint64)
        m = np.minimum(member, len(w.member_id) - 1)
        fp = np.where(~walk_in & (pay == 0), w.member_card_fp[m], fp)
        fp = np.where(~walk_in & (pay == 2), w.member_wallet_fp[m], fp)
        if burst_start.any():
            fp[in_burst] = fp[np.flatnonzero(burst_start)][burst_of[in_burst]]
        n_lines = rng.choice(len(_LINES_P), size=E, p=_LINES_P) + 1
        n_lines[in_burst] = np.minimum(n_lines[in_burst], 2)
        ids = _hex(np.frombuffer(rng.bytes(32 * E), dtype=np.uint8).reshape(E, 32))
        return {
            "event_id": ids[:, :32].copy().view("S32").ravel() if E else np.zeros(0, "S32"),
            "transaction_id": ids[:, 32:].copy().view("S32").ravel() if E else np.zeros(0, "S32"),
            "terminal": (rng.random(E) * w.store_terminals[store]).astype(np.int64) + 1,
            "member": member,
            "pay": pay,
            "fingerprint": _hex(fp.astype(">u8").view(np.uint8).reshape(E, 8)).view("S16").ravel()
            if E
            else np.zeros(0, "S16"),
            "n_lines": n_lines,
            "store": store,
        }

    def _lines(self, rng: np.random.Generator, n_lines: np.ndarray) -> dict[str, np.ndarray]:
        """Natural basket lines: popular products, small quantities, occasional discounts."""
        L = int(n_lines.sum())
        offsets = np.concatenate([[0], np.cumsum(n_lines)]).astype(np.int64)
        pick = np.searchsorted(self.natural_cum, rng.random(L) * self.natural_cum[-1], side="right")
        product = self.natural[np.minimum(pick, len(self.natural) - 1)]
        qty = rng.choice(len(_QTY_P), size=L, p=_QTY_P) + 1
        qty = np.minimum(qty, self.max_qty[product])
        discount = _DISCOUNTS_E4[rng.choice(len(_DISCOUNTS_E4), size=L, p=_DISCOUNT_P)]
        event = np.repeat(np.arange(len(n_lines)), n_lines)
        line_no = np.arange(L) - offsets[event] + 1
        return {
            "offsets": offsets,
            "event": event,
            "line_no": line_no,
            "product": product,
            "qty": qty.astype(np.int64),
            "price": self.price_e4[product].copy(),
            "discount": discount.astype(np.int64),
            "bad": np.full(L, -1, dtype=np.int8),
        }

    def _inject_fraud(self, rng: np.random.Generator, fraud: np.ndarray, ln: dict[str, np.ndarray]) -> None:
        """Rewrite one line of each line-fraud event into its pattern (and nothing else)."""
        offsets = ln["offsets"]
        for kind in range(3):
            ev = np.flatnonzero(fraud == kind)
            if not len(ev):
                continue
            k = len(ev)
            li = offsets[ev] + (rng.random(k) * (offsets[ev + 1] - offsets[ev])).astype(np.int64)
            if kind == 0:
                prod = self.amount_products[rng.integers(len(self.amount_products), size=k)]
                qty = self.thr_e4 // self.price_e4[prod] + 1
                disc = np.zeros(k, dtype=np.int64)
            elif kind == 1:
                j = rng.integers(len(self.hd_products), size=k)
                prod, qty = self.hd_products[j], self.hd_qty[j]
                disc = self.hd_discounts[rng.integers(len(self.hd_discounts), size=k)]
            else:
                prod = self.qty_products[rng.integers(len(self.qty_products), size=k)]
                qty = self.anomaly_qty_lo + rng.integers(0, 10, size=k)
                disc = np.zeros(k, dtype=np.int64)
            ln["product"][li] = prod
            ln["qty"][li] = qty
            ln["price"][li] = self.price_e4[prod]
            ln["discount"][li] = disc

    def _inject_line_defects(
        self, rng: np.random.Generator, events_mask: np.ndarray, ln: dict[str, np.ndarray], E: int
    ) -> np.ndarray:
        """One (sometimes two) bad lines in each chosen event; returns (events, 3) counts."""
        counts = np.zeros((E, len(LINE_DEFECTS)), dtype=np.int64)
        ev = np.flatnonzero(events_mask)
        if not len(ev):
            return counts
        offsets = ln["offsets"]
        n = offsets[ev + 1] - offsets[ev]
        first = offsets[ev] + (rng.random(len(ev)) * n).astype(np.int64)
        two = (n >= 2) & (rng.random(len(ev)) < P_TWO_BAD_LINES)
        second = (
            offsets[ev] + (first - offsets[ev] + 1 + (rng.random(len(ev)) * np.maximum(n - 1, 1)).astype(np.int64)) % n
        )
        lines = np.concatenate([first, second[two]])
        kind = rng.integers(len(LINE_DEFECTS), size=len(lines))
        ln["bad"][lines] = kind
        for k, sel in enumerate(kind == j for j in range(len(LINE_DEFECTS))):
            idx = lines[sel]
            if k == 0:
                ln["qty"][idx] = _BAD_QUANTITIES[rng.integers(len(_BAD_QUANTITIES), size=len(idx))]
            elif k == 1:
                ln["price"][idx] = np.where(rng.random(len(idx)) < 0.4, 0, -ln["price"][idx])
            else:
                ln["discount"][idx] = _BAD_DISCOUNTS_E4[rng.integers(len(_BAD_DISCOUNTS_E4), size=len(idx))]
        np.add.at(counts, (ln["event"][lines], kind), 1)
        return counts

    # ---- encoding -----------------------------------------------------------------------

    def _decimal(self, v: np.ndarray) -> pa.Array:
        """Ten-thousandths as decimal strings with 2-4 decimals (``"-12.50"``, ``"3.795"``)."""
        a = np.abs(v)
        s = pc.binary_join_element_wise(
            pa.array(a // 10_000).cast(pa.string()), self.frac.take(pa.array(a % 10_000)), "."
        )
        neg = v < 0
        if neg.any():
            s = pc.if_else(pa.array(neg), pc.binary_join_element_wise("-", s, ""), s)
        return s

    def _encode(self, ev: dict[str, np.ndarray], ln: dict[str, np.ndarray], times: np.ndarray | None) -> pa.Array:
        """The events as compact JSON in CONTRACT §6 field order, all at once."""
        frag = pc.binary_join_element_wise(
            '{"line_no":', pa.array(ln["line_no"]).cast(pa.string()),
            ',"product_id":"', self.pid.take(pa.array(ln["product"])),
            '","quantity":', pa.array(ln["qty"]).cast(pa.string()),
            ',"unit_price":"', self._decimal(ln["price"]),
            '","discount":"', self._decimal(ln["discount"]),
            '"}', "",
        )  # fmt: skip
        lines = pc.binary_join(pa.ListArray.from_arrays(pa.array(ln["offsets"], pa.int32()), frag), ",")
        cash = ev["pay"] == 1
        fingerprint = pc.if_else(
            pa.array(cash),
            "null",
            pc.binary_join_element_wise('"', pa.array(ev["fingerprint"]).cast(pa.string()), '"', ""),
        )
        when = (
            ""
            if times is None
            else pa.array(np.datetime_as_string(times.astype("datetime64[ms]"), unit="ms").astype(object) + "Z")
        )
        return pc.binary_join_element_wise(
            '{"schema":"' + SCHEMA + '","event_id":"', pa.array(ev["event_id"]).cast(pa.string()),
            '","transaction_id":"', pa.array(ev["transaction_id"]).cast(pa.string()),
            '","event_time":"', when,
            '","store_id":"', self.store_ids.take(pa.array(ev["store"])),
            '","terminal_id":"T', pa.array(ev["terminal"]).cast(pa.string()),
            '","customer_id":', self.member_json.take(pa.array(ev["member"])),
            ',"currency":"', self.currency.take(pa.array(ev["store"])),
            '","payment_method":"', self.payment.take(pa.array(ev["pay"])),
            '","card_fingerprint":', fingerprint,
            ',"lines":[', lines, "]}", "",
        )  # fmt: skip

    def _finish(self, rng, E, text, times, store, malformed, ev, ln, bad, fraud, burst_start) -> EventBlock:
        """Break the malformed messages, lay the block out as one buffer, and count."""
        wall = times is None
        head = (
            len('{"schema":"' + SCHEMA + '","event_id":"')
            + 32
            + len('","transaction_id":"')
            + 32
            + len('","event_time":"')
        )
        broken = np.flatnonzero(malformed >= 0)
        replaced: list[bytes] = []
        replaced_splice: list[int] = []
        for i in broken:
            value, at = self._malform(rng, _KIND_NAMES[malformed[i]], text[int(i)].as_py().encode(), wall, head)
            replaced.append(value)
            replaced_splice.append(at)
        if len(broken):
            index = np.arange(E)
            index[broken] = E + np.arange(len(broken))
            text = pa.concat_arrays([text.cast(pa.binary()), pa.array(replaced, pa.binary())]).take(pa.array(index))
        offsets = np.frombuffer(text.buffers()[1], dtype=np.int32, count=E + 1, offset=text.offset * 4).astype(np.int64)
        data = text.buffers()[2].to_pybytes() if E else b""
        splice = np.full(E, head, dtype=np.int64) if wall else np.full(E, -1, dtype=np.int64)
        if len(broken):
            splice[broken] = replaced_splice
        splice = np.where(splice >= 0, offsets[:-1] + splice, -1)
        # ground truth
        wellformed = malformed < 0
        L = len(ln["event"])
        valid = wellformed[ln["event"]] & (ln["bad"] < 0)
        gross = ln["qty"] * ln["price"]
        rules = np.stack([
            valid & (gross > self.thr_e4),
            valid & (ln["discount"] >= self.hd_e4) & (gross > self.hd_amount_e4),
        ], axis=1)  # fmt: skip
        cum = lambda x: np.concatenate([np.zeros((1, *x.shape[1:]), dtype=np.int64), np.cumsum(x, axis=0)])  # noqa: E731
        o = ln["offsets"]
        per_event = lambda x: (lambda c: c[o[1:]] - c[o[:-1]])(cum(x))  # noqa: E731
        tids = ev["transaction_id"]
        fraud_ids = [(int(i), int(fraud[i]), tids[i].decode()) for i in np.flatnonzero(fraud >= 0)]
        return EventBlock(
            size=E,
            data=data,
            starts=offsets[:-1].tolist(),
            ends=offsets[1:].tolist(),
            splice=splice.tolist(),
            store=store.tolist(),
            malformed=malformed,
            lines=np.where(wellformed, ev["n_lines"], 0),
            bad_lines=bad,
            valid_sales_e4=per_event(np.where(valid, gross, 0)) if L else np.zeros(E, dtype=np.int64),
            rule_lines=per_event(rules.astype(np.int64)) if L else np.zeros((E, 2), dtype=np.int64),
            fraud=fraud,
            burst_start=burst_start,
            fraud_ids=fraud_ids,
            times_ms=times,
        )

    def _malform(self, rng: np.random.Generator, kind: str, text: bytes, wall: bool, head: int) -> tuple[bytes, int]:
        """One message-level defect; returns the bytes and where the event time goes (-1)."""
        if kind == "truncated_json":
            return text[: int(rng.integers(1, len(text) - 1))], -1
        if kind == "binary":
            raw = rng.bytes(int(rng.integers(8, 200)))
            return bytes([0x80 | (raw[0] & 0x3F)]) + raw[1:], -1  # a UTF-8 continuation byte first
        doc = json.loads(text)
        if kind == "oversized":
            return self._oversized(rng, doc), (head if wall else -1)
        if kind.startswith("missing:"):
            del doc[kind.split(":", 1)[1]]
        elif kind == "wrong_schema":
            doc["schema"] = _WRONG_SCHEMAS[int(rng.integers(len(_WRONG_SCHEMAS)))]
        elif kind == "quantity_not_integer":
            doc["lines"][int(rng.integers(len(doc["lines"])))]["quantity"] = ("two", 2.5)[int(rng.integers(2))]
        elif kind == "unit_price_float":
            line = doc["lines"][int(rng.integers(len(doc["lines"])))]
            line["unit_price"] = float(line["unit_price"])
        elif kind == "unknown_currency":
            doc["currency"] = self.bad_currency
        elif kind == "bad_event_time":
            doc["event_time"] = _BAD_EVENT_TIMES[int(rng.integers(len(_BAD_EVENT_TIMES)))]
        elif kind == "empty_lines":
            doc["lines"] = []
        else:  # pragma: no cover - every kind is handled above
            raise AssertionError(kind)
        value = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
        splice = -1
        if wall and kind != "bad_event_time":
            at = value.find(b'"event_time":""')
            splice = at + len(b'"event_time":"') if at >= 0 else -1
        return value, splice

    def _oversized(self, rng: np.random.Generator, doc: dict) -> bytes:
        """A well-formed sale with so many lines that it exceeds max_message_bytes."""
        if self.frac_list is None:
            self.frac_list = self.frac.to_pylist()
        limit = self.stream_settings.max_message_bytes
        target = limit + 1 + int(rng.integers(0, max(limit // 10, 1)))
        doc["lines"] = []
        prefix = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)[: -len("[]}")]
        m = self.world.master
        parts, size, k = [], len(prefix) + 2, 0
        pick = self.natural[np.minimum(np.searchsorted(self.natural_cum, rng.random(4096) * self.natural_cum[-1], side="right"),
                                       len(self.natural) - 1)]  # fmt: skip
        while size <= target:
            p = int(pick[k % len(pick)])
            price = int(self.price_e4[p])
            k += 1
            part = (
                f'{{"line_no":{k},"product_id":"{m.product_id[p]}","quantity":1,'
                f'"unit_price":"{price // 10_000}.{self.frac_list[price % 10_000]}","discount":"0.00"}}'
            )
            parts.append(part)
            size += len(part) + 1
        return (prefix + "[" + ",".join(parts) + "]}").encode()


def _hex(b: np.ndarray) -> np.ndarray:
    """Bytes (rows of uint8) as lower-case hex: twice as many uint8 columns of ASCII."""
    out = np.empty((b.shape[0], b.shape[1] * 2), dtype=np.uint8)
    out[:, 0::2] = _HEX[b >> 4]
    out[:, 1::2] = _HEX[b & 15]
    return out


def _check_seed(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise UserError(f"{name} must be a non-negative integer, got {value!r}")


def _check_share(name: str, value: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or math.isnan(float(value))
        or not 0.0 <= float(value) <= 1.0
    ):
        raise UserError(f"{name} must be between 0 and 1, got {value!r}")


def _epoch_ms(when: datetime) -> int:
    if when.tzinfo is None:
        raise UserError(f"start time {when.isoformat()} has no time zone; give one (e.g. 2026-01-01T00:00:00Z)")
    return int(round(when.timestamp() * 1000))
