"""A realistic, deterministic operational shop database in PostgreSQL (``saleslake generate oltp``).

:func:`generate_oltp` creates the schema below in the target database and fills it with
``orders`` orders of 1–6 lines each, the same for the same ``seed`` (bulk loaded with
binary ``COPY`` in one transaction: readers see no shop or the whole shop).
``mutate=True`` then applies a batch of later changes, as an operational system would::

    from saleslake.sample.oltp import generate_oltp
    summary = generate_oltp(settings.postgres, orders=200_000, seed=42)
    summary = generate_oltp(settings.postgres, mutate=True)   # one round of changes

Schema (``public``)::

    stores       store_id text PK, store_name, channel ('store'|'outlet'), city, state, country,
                 postal_code, region, market, currency, opened_on
    customers    customer_id text PK, customer_name, email, segment, address_line, city, state,
                 country, postal_code, region, market
    products     product_id text PK, product_name, category, sub_category, list_price, unit_cost
    orders       order_id bigint PK, customer_id FK, store_id FK (NULL: web shop), channel
                 ('web'|'store'), order_ts, status ('placed'|'shipped'|'delivered'|'cancelled'),
                 ship_mode, order_priority, ship_date (NULL until shipped), ship_city, ship_state,
                 ship_country, ship_postal_code, ship_region, ship_market (the delivery address
                 at order time), currency, cancelled_at
    order_lines  order_line_id bigint PK, order_id FK, line_no (unique per order), product_id FK,
                 quantity > 0, unit_price, discount in [0, 1], unit_cost, shipping_cost

Every table has ``created_at``, ``updated_at`` (timestamptz, set by this generator on every
change, indexed together with the key for incremental extracts) and ``deleted_at`` (soft
delete). Money is ``numeric(12,2)`` in USD. Sales of a line = ``quantity × unit_price``,
profit = ``quantity × (unit_price × (1 − discount) − unit_cost)``.

The fill covers 2024-01-01 to 2025-12-31: product ids, names, categories and prices are
the CSV exports' catalog (:func:`saleslake.sample.csv_export.master_data`, same seed), the
geography is theirs too; customers (``CU-0000001``…) and stores (``ST-1001``…) are the
shop's own. Some orders are cancelled or soft-deleted, some lines removed, the last days'
orders not shipped yet. A few names carry quotes, backslashes, a newline and SQL-looking
text such as ``'); DROP TABLE orders; --``: they must arrive anywhere unchanged.

A mutation round (each in its own transactions, ``updated_at = now()`` of its
transaction, so many rows share one identical ``updated_at``): about 1 % of customers move
(address, city, maybe country within their region), 0.5 % change segment; 3 % of products
change price, 1 % their name; 60 % of the unshipped orders ship (ship date set), half of
the shipped ones are delivered; 15 % of the remaining unshipped orders are cancelled; a few
orders are soft-deleted and a few lines removed; 0.5 % new orders (at least 10) arrive.
Which rows change is decided by ``seed`` and the round number (kept in
``saleslake_generator_log``), so the same database state and seed give the same changes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np

from saleslake.dbapi import one_row
from saleslake.errors import PipelineError, TransientError, UserError
from saleslake.sample import catalog
from saleslake.sample import csv_export as cx

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

    from saleslake.config import PostgresSettings

__all__ = ["DEFAULT_ORDERS", "SQL_INJECTION_TEXT", "TABLES", "OltpSummary", "generate_oltp"]

DEFAULT_ORDERS = 10_000
TABLES = ("stores", "customers", "products", "orders", "order_lines")
LOG_TABLE = "saleslake_generator_log"
SQL_INJECTION_TEXT = "'); DROP TABLE orders; --"

START = datetime(2024, 1, 1, tzinfo=UTC)
SPAN_DAYS = 731  # 2024-01-01 .. 2025-12-31
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_DATE = date(1970, 1, 1)
US = 1_000_000
DAY_US = 86_400 * US
START_US = int((START - EPOCH).total_seconds()) * US
END_US = START_US + SPAN_DAYS * DAY_US
CHUNK_ORDERS = 100_000
CURRENCY = "USD"

P_STORE = 0.35  # share of orders placed in a store (when the customer's region has one)
P_CANCELLED = 0.02
P_DELETED_ORDER = 0.002
P_DELETED_LINE = 0.003

# Streets, store name suffixes and rename suffixes: package data (saleslake/sample/data/shop.toml).
_STREETS = catalog.strings("shop", "streets")
_STORE_SUFFIXES = catalog.strings("shop", "store_suffixes")
_RENAMES = catalog.strings("shop", "renames")

# Planted text values: quotes, backslash, newline, unicode and SQL-looking content.
_PLANTED_CUSTOMERS = (
    {"customer_name": "Robert" + SQL_INJECTION_TEXT, "email": "bobby.tables@example.com"},
    {"customer_name": 'Zoë "Zed" O\'Connor-Łukasiewicz', "email": "zed.oconnor@example.com"},
    {"customer_name": "Sam Back\\slash", "address_line": 'c/o Reception\nBuilding 2; Suite "B"'},
)
_PLANTED_PRODUCTS = (
    ("OFF-PA-99999901", "Office Supplies", "Paper", "Copy Paper" + SQL_INJECTION_TEXT, 1299),
    ("FUR-TA-99999902", "Furniture", "Tables", 'Conference Table 72" x 36" "Executive"', 45900),
    ("TEC-AC-99999903", "Technology", "Accessories", "USB-C Hub; DELETE FROM products WHERE '1'='1", 3499),
)
_PLANTED_STORE = 'Kiosk "Terminal 2"' + SQL_INJECTION_TEXT


#: Where a store or a customer is, and an order's ship-to address (as ``ship_*``).
LOCATION = ("city", "state", "country", "postal_code", "region", "market")


def _location_ddl(prefix: str = "") -> str:
    """The :data:`LOCATION` columns of the DDL (text; only state and postal code may be NULL)."""
    return ", ".join(
        f"{prefix}{name} text" + ("" if name in ("state", "postal_code") else " NOT NULL") for name in LOCATION
    )


DDL = f"""
CREATE TABLE stores (
    store_id     text PRIMARY KEY,
    store_name   text NOT NULL,
    channel      text NOT NULL CHECK (channel IN ('store', 'outlet')),
    {_location_ddl()},
    currency     text NOT NULL,
    opened_on    date NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    deleted_at   timestamptz
);
CREATE TABLE customers (
    customer_id   text PRIMARY KEY,
    customer_name text NOT NULL,
    email         text,
    segment       text NOT NULL CHECK (segment IN ('Consumer', 'Corporate', 'Home Office')),
    address_line  text,
    {_location_ddl()},
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    deleted_at    timestamptz
);
CREATE TABLE products (
    product_id    text PRIMARY KEY,
    product_name  text NOT NULL,
    category      text NOT NULL,
    sub_category  text NOT NULL,
    list_price    numeric(12,2) NOT NULL CHECK (list_price > 0),
    unit_cost     numeric(12,2) NOT NULL CHECK (unit_cost >= 0),
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    deleted_at    timestamptz
);
CREATE TABLE orders (
    order_id         bigint PRIMARY KEY,
    customer_id      text NOT NULL,
    store_id         text,
    channel          text NOT NULL CHECK (channel IN ('web', 'store')),
    order_ts         timestamptz NOT NULL,
    status           text NOT NULL CHECK (status IN ('placed', 'shipped', 'delivered', 'cancelled')),
    ship_mode        text NOT NULL,
    order_priority   text NOT NULL,
    ship_date        date,
    {_location_ddl("ship_")},
    currency         text NOT NULL,
    cancelled_at     timestamptz,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    deleted_at       timestamptz,
    CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL)),
    CHECK (status IN ('placed', 'cancelled') OR ship_date IS NOT NULL),
    CHECK ((channel = 'store') = (store_id IS NOT NULL))
);
CREATE TABLE order_lines (
    order_line_id bigint PRIMARY KEY,
    order_id      bigint NOT NULL,
    line_no       integer NOT NULL CHECK (line_no > 0),
    product_id    text NOT NULL,
    quantity      integer NOT NULL CHECK (quantity > 0),
    unit_price    numeric(12,2) NOT NULL CHECK (unit_price > 0),
    discount      numeric(5,4) NOT NULL DEFAULT 0 CHECK (discount >= 0 AND discount <= 1),
    unit_cost     numeric(12,2) NOT NULL,
    shipping_cost numeric(12,2) NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    deleted_at    timestamptz,
    UNIQUE (order_id, line_no)
);
CREATE TABLE IF NOT EXISTS {LOG_TABLE} (
    run_no     integer PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('fill', 'mutate')),
    seed       bigint NOT NULL,
    orders     bigint NOT NULL,
    at         timestamptz NOT NULL DEFAULT now(),
    counts     jsonb NOT NULL
);
"""

CONSTRAINTS = """
ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers;
ALTER TABLE orders ADD CONSTRAINT orders_store_fk FOREIGN KEY (store_id) REFERENCES stores;
ALTER TABLE order_lines ADD CONSTRAINT order_lines_order_fk FOREIGN KEY (order_id) REFERENCES orders;
ALTER TABLE order_lines ADD CONSTRAINT order_lines_product_fk FOREIGN KEY (product_id) REFERENCES products;
CREATE INDEX stores_updated_at_idx ON stores (updated_at, store_id);
CREATE INDEX customers_updated_at_idx ON customers (updated_at, customer_id);
CREATE INDEX products_updated_at_idx ON products (updated_at, product_id);
CREATE INDEX orders_updated_at_idx ON orders (updated_at, order_id);
CREATE INDEX order_lines_updated_at_idx ON order_lines (updated_at, order_line_id);
CREATE INDEX orders_customer_idx ON orders (customer_id);
CREATE INDEX orders_status_idx ON orders (status) WHERE status IN ('placed', 'shipped');
CREATE INDEX order_lines_product_idx ON order_lines (product_id);
"""

COLUMNS = {
    "stores": (
        "store_id",
        "store_name",
        "channel",
        *LOCATION,
        "currency",
        "opened_on",
        "created_at",
        "updated_at",
        "deleted_at",
    ),
    "customers": (
        "customer_id",
        "customer_name",
        "email",
        "segment",
        "address_line",
        *LOCATION,
        "created_at",
        "updated_at",
        "deleted_at",
    ),
    "products": (
        "product_id",
        "product_name",
        "category",
        "sub_category",
        "list_price",
        "unit_cost",
        "created_at",
        "updated_at",
        "deleted_at",
    ),
    "orders": (
        "order_id",
        "customer_id",
        "store_id",
        "channel",
        "order_ts",
        "status",
        "ship_mode",
        "order_priority",
        "ship_date",
        *(f"ship_{name}" for name in LOCATION),
        "currency",
        "cancelled_at",
        "created_at",
        "updated_at",
        "deleted_at",
    ),
    "order_lines": (
        "order_line_id",
        "order_id",
        "line_no",
        "product_id",
        "quantity",
        "unit_price",
        "discount",
        "unit_cost",
        "shipping_cost",
        "created_at",
        "updated_at",
        "deleted_at",
    ),
}
TYPES = {
    "stores": ("text",) * 10 + ("date", "timestamptz", "timestamptz", "timestamptz"),
    "customers": ("text",) * 11 + ("timestamptz",) * 3,
    "products": ("text",) * 4 + ("numeric", "numeric") + ("timestamptz",) * 3,
    "orders": ("int8",)
    + ("text",) * 3
    + ("timestamptz",)
    + ("text",) * 3
    + ("date",)
    + ("text",) * 7
    + ("timestamptz",) * 4,
    "order_lines": ("int8", "int8", "int4", "text", "int4", "numeric", "numeric", "numeric", "numeric")
    + ("timestamptz",) * 3,
}


class OltpGeneratorError(UserError):
    """The target database cannot take the shop as asked (tables of someone else, bad size)."""


class OltpBusyError(TransientError):
    """Another session holds a lock the generator needs (retry when it is done)."""


@dataclass
class OltpSummary:
    """What the generator did; ``tables`` are row counts after it (soft-deleted rows included)."""

    action: str  # "filled", "unchanged" (already filled alike) or "mutated"
    dsn: str  # without password
    seed: int
    orders: int  # orders of the fill
    tables: dict[str, int]
    loaded: dict[str, int] = field(default_factory=dict)  # rows loaded by the fill
    changes: dict[str, int] = field(default_factory=dict)  # what the mutation round changed
    round: int = 0  # mutation round (0: the fill)
    shared_updated_at: str | None = None  # the updated_at most rows of this round share
    shared_updated_at_rows: int = 0
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return sum(self.loaded.values()) / self.seconds if self.seconds and self.loaded else 0.0

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "rows_per_second": round(self.rows_per_second)}, indent=2)


# --------------------------------------------------------------------------- public API


def generate_oltp(
    pg: PostgresSettings,
    dsn: str | None = None,
    orders: int = DEFAULT_ORDERS,
    mutate: bool = False,
    seed: int = 42,
    replace: bool = False,
    progress: Callable[[int], None] | None = None,
) -> OltpSummary:
    """Create and fill the shop (when not filled yet), or with ``mutate`` apply one round of
    changes (filling first when the database is empty). ``dsn`` defaults to the owner's
    ``pg.dsn_for("owner")``; the password comes from ``SALESLAKE_POSTGRES_PASSWORD[_FILE]``.

    Filling again with the same ``seed`` and ``orders`` changes nothing; other values, or
    tables this generator did not make, need ``replace=True`` (drops and recreates the five
    tables in the same transaction as the new fill). ``progress(n)`` gets loaded order lines.
    """
    from saleslake.connections.postgres import connect, redact

    if isinstance(orders, bool) or not isinstance(orders, (int, np.integer)) or orders < 1:
        raise OltpGeneratorError(f"--orders must be a positive integer, got {orders!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise OltpGeneratorError(f"--seed must be a non-negative integer, got {seed!r}")
    orders, seed = int(orders), int(seed)
    target = dsn or pg.dsn_for("owner")
    shown = redact(target)
    started = time.perf_counter()
    conn = connect(pg, "owner", target, statement_timeout=0, application_name="saleslake generate oltp")
    try:
        state = _state(conn)
        summary: OltpSummary | None = None
        if state["fill"] is None or replace:
            if state["tables"] and not replace:
                raise OltpGeneratorError(
                    f"{shown} already has table(s) {', '.join(state['tables'])} that saleslake did not generate: "
                    "use another database or --replace to drop and recreate them"
                )
            summary = _fill(conn, shown, orders, seed, replace=bool(state["tables"]), progress=progress)
            state = _state(conn)
        elif not mutate:
            fill = state["fill"]
            if (fill["seed"], fill["orders"]) != (seed, orders):
                raise OltpGeneratorError(
                    f"{shown} already holds a shop generated with seed {fill['seed']} and {fill['orders']:,} orders: "
                    "use --mutate to change it, or --replace to recreate it with these values"
                )
            summary = OltpSummary("unchanged", shown, seed, orders, _counts(conn), round=state["rounds"])
        if mutate:
            fill = state["fill"]
            summary = _mutate(
                conn,
                shown,
                int(fill["seed"]),
                int(fill["orders"]),
                state["rounds"] + 1,
                loaded=summary.loaded if summary else {},
            )
        assert summary is not None
        summary.seconds = round(time.perf_counter() - started, 3)
        return summary
    except Exception as exc:
        _translate(exc, shown)
        raise
    finally:
        conn.close()


def _translate(exc: Exception, shown: str) -> None:
    """Raise a clear saleslake error for database errors a user can act on."""
    import psycopg
    from psycopg import errors as pge

    if isinstance(exc, (pge.LockNotAvailable, pge.DeadlockDetected)):
        raise OltpBusyError(
            f"another session holds a lock on the shop tables in {shown}; retry when it is done "
            f"({' '.join(str(exc).split())[:200]})"
        ) from None
    if isinstance(exc, (pge.InsufficientPrivilege, pge.ReadOnlySqlTransaction)):
        raise OltpGeneratorError(
            f"the role of {shown} may not create or change the shop tables: use the owner role "
            f"(SALESLAKE_POSTGRES__USER) ({' '.join(str(exc).split())[:200]})"
        ) from None
    if isinstance(exc, psycopg.OperationalError):
        raise TransientError(f"the connection to {shown} failed: {' '.join(str(exc).split())[:300]}") from None
    if isinstance(exc, psycopg.Error):
        raise PipelineError(f"generate oltp failed in {shown}: {' '.join(str(exc).split())[:300]}") from None


# --------------------------------------------------------------------------- state


def _state(conn: psycopg.Connection) -> dict[str, Any]:
    present = [
        t
        for t in (*TABLES, LOG_TABLE)
        if one_row(conn.execute("SELECT to_regclass(%s)", (f"public.{t}",)))[0] is not None
    ]
    fill, rounds = None, 0
    if LOG_TABLE in present:
        row = conn.execute(
            f"SELECT seed, orders FROM {LOG_TABLE} WHERE kind = 'fill' ORDER BY run_no DESC LIMIT 1"
        ).fetchone()
        if row and all(t in present for t in TABLES):
            fill = {"seed": row[0], "orders": row[1]}
        rounds = one_row(conn.execute(f"SELECT count(*) FROM {LOG_TABLE} WHERE kind = 'mutate'"))[0]
    conn.commit()
    return {"tables": [t for t in present if t != LOG_TABLE], "fill": fill, "rounds": int(rounds)}


def _counts(conn: psycopg.Connection) -> dict[str, int]:
    out = {t: int(one_row(conn.execute(f"SELECT count(*) FROM {t}"))[0]) for t in TABLES}
    conn.commit()
    return out


def _lock(conn: psycopg.Connection) -> None:
    """Serialise generator runs on one database (released at commit)."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('saleslake.generate_oltp'))")


# --------------------------------------------------------------------------- fill


def _fill(
    conn: psycopg.Connection, shown: str, orders: int, seed: int, replace: bool, progress: Callable[[int], None] | None
) -> OltpSummary:
    started = time.perf_counter()
    world = _World(seed, orders)
    loaded: dict[str, int] = {}
    with conn.transaction():
        conn.execute("SET LOCAL lock_timeout = '10s'")
        _lock(conn)
        if replace:
            conn.execute(f"DROP TABLE IF EXISTS order_lines, orders, customers, products, stores, {LOG_TABLE} CASCADE")
        conn.execute(DDL)
        loaded["stores"] = _copy(conn, "stores", world.store_rows())
        loaded["customers"] = _copy(conn, "customers", world.customer_rows())
        loaded["products"] = _copy(conn, "products", world.product_rows())
        loaded["orders"] = loaded["order_lines"] = 0
        for order_rows, line_rows in world.order_chunks():
            loaded["orders"] += _copy(conn, "orders", order_rows)
            n = _copy(conn, "order_lines", line_rows)
            loaded["order_lines"] += n
            if progress:
                progress(n)
        conn.execute(CONSTRAINTS)
        conn.execute(
            f"INSERT INTO {LOG_TABLE} (run_no, kind, seed, orders, counts) "
            f"SELECT coalesce(max(run_no), 0) + 1, 'fill', %s, %s, %s::jsonb FROM {LOG_TABLE}",
            (seed, orders, json.dumps(loaded)),
        )
    conn.autocommit = True
    try:
        conn.execute("ANALYZE stores, customers, products, orders, order_lines")
    finally:
        conn.autocommit = False
    summary = OltpSummary("filled", shown, seed, orders, dict(loaded), loaded=dict(loaded))
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


def _copy(conn: psycopg.Connection, table: str, rows: Iterable[Sequence[Any]]) -> int:
    n = 0
    with (
        conn.cursor() as cur,
        cur.copy(f"COPY {table} ({', '.join(COLUMNS[table])}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.set_types(list(TYPES[table]))
        for row in rows:
            copy.write_row(row)
            n += 1
    return n


def _p(weights: Sequence[float] | np.ndarray) -> np.ndarray:
    a = np.asarray(weights, dtype=float)
    return a / a.sum()


def _ts(us: np.ndarray) -> list[datetime]:
    return [EPOCH + timedelta(microseconds=v) for v in np.asarray(us, dtype=np.int64).tolist()]


def _ts_or_none(us: np.ndarray, mask: np.ndarray) -> list[datetime | None]:
    out: list[datetime | None] = [None] * len(us)
    for i in np.flatnonzero(mask).tolist():
        out[i] = EPOCH + timedelta(microseconds=int(us[i]))
    return out


def _money(cents: np.ndarray) -> list[Decimal]:
    return [Decimal(c).scaleb(-2) for c in np.asarray(cents, dtype=np.int64).tolist()]


def _none_if_empty(values: Iterable[str]) -> list[str | None]:
    return [v or None for v in values]


class _Geo:
    """The exports' geography (cities with state, country, region, market) for one seed."""

    def __init__(self, seed: int) -> None:
        self.m = m = cx.master_data(seed=seed, rows=0)
        self.city_region = np.asarray(m.city_region, dtype=np.int64)
        self.city_country = np.asarray(m.city_country, dtype=np.int64)
        self.city_weight = np.asarray(m.city_weight, dtype=float)
        self.city_label = [m.region_labels[r] for r in self.city_region.tolist()]
        self.city_market = [m.country_market[c] for c in self.city_country.tolist()]
        self.city_country_name = [m.country_name[c] for c in self.city_country.tolist()]
        self.region_weight = np.array([cx.REGIONS[k].weight for k in m.regions])
        self.cities_of_region = [np.flatnonzero(self.city_region == r) for r in range(len(m.regions))]
        self.cities_of_country = [np.flatnonzero(self.city_country == c) for c in range(len(m.country_name))]

    def location_columns(self, cities: list[int]) -> list[list]:
        """Where each city is, as the tables' columns in their order: city, state, country,
        postal code, region, market (an empty state or postal code is NULL)."""
        m = self.m
        return [
            [m.city_name[c] for c in cities],
            _none_if_empty(m.city_state[c] for c in cities),
            [self.city_country_name[c] for c in cities],
            _none_if_empty(m.city_postal[c] for c in cities),
            [self.city_label[c] for c in cities],
            [self.city_market[c] for c in cities],
        ]

    def pick_city(self, rng: np.random.Generator, regions: np.ndarray) -> np.ndarray:
        """A city of each given region, by the cities' weights."""
        out = np.empty(len(regions), dtype=np.int64)
        for r in np.unique(regions).tolist():
            idx = np.flatnonzero(regions == r)
            cities = self.cities_of_region[r]
            out[idx] = rng.choice(cities, size=len(idx), p=_p(self.city_weight[cities]))
        return out


class _World:
    """Everything the fill writes, derived from (seed, orders) only."""

    def __init__(self, seed: int, orders: int) -> None:
        self.seed, self.n_orders = seed, orders
        self.geo = _Geo(seed)
        self.m = self.geo.m
        self._stores(np.random.default_rng([seed, 101]))
        self._customers(np.random.default_rng([seed, 102]))
        self._products(np.random.default_rng([seed, 103]))

    # reference data ----------------------------------------------------------------

    def _stores(self, rng: np.random.Generator) -> None:
        m, geo = self.m, self.geo
        per_region = np.maximum(2, np.round(geo.region_weight * 3).astype(int))
        region = np.repeat(np.arange(len(m.regions)), per_region)  # grouped by region
        city = geo.pick_city(rng, region)
        n = len(region)
        suffix = rng.integers(len(_STORE_SUFFIXES), size=n)
        names = [f"{m.city_name[c]} {_STORE_SUFFIXES[s]}" for c, s in zip(city.tolist(), suffix.tolist())]
        planted = int(rng.integers(n))
        names[planted] = _PLANTED_STORE
        opened_day = (START_US // DAY_US) - 365 * 8 + np.floor(rng.random(n) * 365 * 7).astype(np.int64)
        opened = [EPOCH_DATE + timedelta(days=d) for d in opened_day.tolist()]
        created_us = (opened_day - 30) * DAY_US + 9 * 3600 * US
        updated_us = created_us + (rng.random(n) < 0.3) * np.floor(rng.random(n) * 300).astype(np.int64) * DAY_US
        self.n_stores = n
        self.store_id = [f"ST-{1001 + i}" for i in range(n)]
        self.store_region = region
        self.store_city = city
        self.store_rows_ = list(
            zip(
                self.store_id,
                names,
                ["outlet" if _STORE_SUFFIXES[s] == "Outlet" else "store" for s in suffix.tolist()],
                *geo.location_columns(city.tolist()),
                [CURRENCY] * n,
                opened,
                _ts(created_us),
                _ts(updated_us),
                [None] * n,
            )
        )
        self.stores_n = np.bincount(region, minlength=len(m.regions))
        self.stores_lo = np.cumsum(self.stores_n) - self.stores_n

    def store_rows(self) -> list[tuple]:
        return self.store_rows_

    def _customers(self, rng: np.random.Generator) -> None:
        m, geo = self.m, self.geo
        n = max(100, self.n_orders // 4)
        region = rng.choice(len(m.regions), size=n, p=_p(geo.region_weight))
        city = geo.pick_city(rng, region)
        first = rng.integers(len(cx._FIRST_NAMES), size=n)
        last = rng.integers(len(cx._LAST_NAMES), size=n)
        segment = rng.choice(3, size=n, p=cx._SEGMENT_P)
        number = rng.integers(1, 250, size=n)
        street = rng.integers(len(_STREETS), size=n)
        created_us = START_US - np.floor(rng.random(n) * 3 * 365 * DAY_US).astype(np.int64) // US * US
        changed = rng.random(n) < 0.2
        updated_us = created_us + changed * (
            np.floor(rng.random(n) * (START_US - created_us)).astype(np.int64) // US * US
        )
        self.n_customers = n
        self.cust_id = [f"CU-{i + 1:07d}" for i in range(n)]
        self.cust_region = region
        self.cust_city = city
        self.cust_cum = np.cumsum(rng.lognormal(0.0, 0.8, n))
        names = [f"{cx._FIRST_NAMES[a]} {cx._LAST_NAMES[b]}" for a, b in zip(first.tolist(), last.tolist())]
        emails = [
            f"{cx._FIRST_NAMES[a]}.{cx._LAST_NAMES[b]}{i % 97}@example.com".lower().replace(" ", "")
            for i, (a, b) in enumerate(zip(first.tolist(), last.tolist()))
        ]
        address = [f"{k} {_STREETS[s]}" for k, s in zip(number.tolist(), street.tolist())]
        for i, planted in enumerate(_PLANTED_CUSTOMERS):
            names[i] = planted.get("customer_name", names[i])
            emails[i] = planted.get("email", emails[i])
            address[i] = planted.get("address_line", address[i])
        cities = city.tolist()
        self.customer_rows_ = list(
            zip(
                self.cust_id,
                names,
                emails,
                [cx._SEGMENTS[s] for s in segment.tolist()],
                address,
                *geo.location_columns(cities),
                _ts(created_us),
                _ts(updated_us),
                [None] * n,
            )
        )

    def customer_rows(self) -> list[tuple]:
        return self.customer_rows_

    def _products(self, rng: np.random.Generator) -> None:
        m = self.m
        margin_of = {s[2]: s[6] for s in cx._SUBCATEGORIES}
        ids = list(m.product_id) + [p[0] for p in _PLANTED_PRODUCTS]
        names = list(m.product_name) + [p[3] for p in _PLANTED_PRODUCTS]
        cats = list(m.category) + [p[1] for p in _PLANTED_PRODUCTS]
        subs = list(m.sub_category) + [p[2] for p in _PLANTED_PRODUCTS]
        price = np.concatenate(
            [
                np.maximum((np.asarray(m.list_price_e4, dtype=np.int64) + 50) // 100, 1),
                np.array([p[4] for p in _PLANTED_PRODUCTS], dtype=np.int64),
            ]
        )
        n = len(ids)
        ratio = np.clip(0.8 - np.array([margin_of[s] for s in subs]) + rng.normal(0.0, 0.04, n), 0.4, 1.05)
        cost = np.maximum(np.round(price * ratio).astype(np.int64), 1)
        created_us = START_US - np.floor(rng.random(n) * 4 * 365 * DAY_US).astype(np.int64) // US * US
        changed = rng.random(n) < 0.25
        updated_us = created_us + changed * (
            np.floor(rng.random(n) * (START_US - created_us)).astype(np.int64) // US * US
        )
        popularity = np.concatenate(
            [np.asarray(m.popularity, dtype=float), np.full(len(_PLANTED_PRODUCTS), float(np.median(m.popularity)))]
        )
        self.n_products = n
        self.prod_id = ids
        self.prod_cum = np.cumsum(popularity)
        self.prod_price = price
        self.prod_cost = cost
        self.prod_price_dec = _money(price)
        self.prod_cost_dec = _money(cost)
        self.product_rows_ = list(
            zip(
                ids,
                names,
                cats,
                subs,
                self.prod_price_dec,
                self.prod_cost_dec,
                _ts(created_us),
                _ts(updated_us),
                [None] * n,
            )
        )

    def product_rows(self) -> list[tuple]:
        return self.product_rows_

    # orders --------------------------------------------------------------------------
    def _order_times(self) -> np.ndarray:
        """Sorted order timestamps (µs): weekday, season, growth, hour of day."""
        rng = np.random.default_rng([self.seed, 104])
        days = np.arange(SPAN_DAYS)
        dates = [START.date() + timedelta(days=int(d)) for d in days]
        w_day = np.array([1.0, 1.05, 1.05, 1.0, 0.95, 0.8, 0.7])[[d.weekday() for d in dates]]
        w_month = np.array([0.85, 0.85, 0.95, 0.95, 1.0, 1.0, 0.95, 0.95, 1.05, 1.05, 1.2, 1.3])[
            [d.month - 1 for d in dates]
        ]
        w = w_day * w_month * 1.12 ** (days / 365.0)
        day = rng.choice(SPAN_DAYS, size=self.n_orders, p=w / w.sum())
        second = np.clip(rng.normal(15.0 * 3600, 4.0 * 3600, self.n_orders), 0, 86_399).astype(np.int64)
        return np.sort(START_US + day * DAY_US + second * US)

    def order_chunks(self) -> Iterable[tuple[list[tuple], list[tuple]]]:
        times = self._order_times()
        line_id = 1
        for k, lo in enumerate(range(0, self.n_orders, CHUNK_ORDERS)):
            ts = times[lo : lo + CHUNK_ORDERS]
            orders, lines = self._order_chunk(np.random.default_rng([self.seed, 105, k]), ts, lo + 1, line_id)
            line_id += len(lines)
            yield orders, lines

    def _order_chunk(
        self, rng: np.random.Generator, ts: np.ndarray, first_id: int, first_line_id: int
    ) -> tuple[list[tuple], list[tuple]]:
        geo, n = self.geo, len(ts)
        cust = np.minimum(
            np.searchsorted(self.cust_cum, rng.random(n) * self.cust_cum[-1], side="right"), self.n_customers - 1
        )
        region = self.cust_region[cust]
        in_store = (rng.random(n) < P_STORE) & (self.stores_n[region] > 0)
        offset = np.floor(rng.random(n) * np.maximum(self.stores_n[region], 1)).astype(np.int64)
        store = np.where(in_store, self.stores_lo[region] + offset, -1)
        city = self.cust_city[cust]
        prio = rng.choice(4, size=n, p=cx._PRIORITY_P)
        mode_cum = np.cumsum(cx._MODE_GIVEN_PRIORITY, axis=1)
        mode = np.minimum((rng.random(n)[:, None] > mode_cum[prio]).sum(axis=1), 3)
        prio = np.where(in_store, 2, prio)
        mode = np.where(in_store, 0, mode)
        lo = np.array([d[0] for d in cx._SHIP_DAYS])[mode]
        hi = np.array([d[1] for d in cx._SHIP_DAYS])[mode]
        lead = np.where(in_store, 0, lo + np.floor(rng.random(n) * (hi - lo + 1)).astype(np.int64))
        order_day = ts // DAY_US
        shipped = (order_day + lead) * DAY_US + (8 * 3600 + np.floor(rng.random(n) * 10 * 3600).astype(np.int64)) * US
        shipped = np.where(in_store, ts, np.maximum(shipped, ts + 3600 * US))
        delivered = np.where(in_store, ts, shipped + (1 + np.floor(rng.random(n) * 4).astype(np.int64)) * DAY_US)
        cancelled = ~in_store & (rng.random(n) < P_CANCELLED)
        cancelled_at = ts + (600 + np.floor(rng.random(n) * 48 * 3600).astype(np.int64)) * US
        status = np.where(cancelled, 3, np.where(shipped > END_US, 0, np.where(delivered <= END_US, 2, 1)))
        updated = np.select([status == 3, status == 0, status == 1], [cancelled_at, ts, shipped], delivered)
        deleted = rng.random(n) < P_DELETED_ORDER
        deleted_at = np.minimum(
            updated + (3600 + np.floor(rng.random(n) * 30 * 86_400).astype(np.int64)) * US,
            np.maximum(END_US, updated + US),
        )
        updated = np.where(deleted, deleted_at, updated)
        has_ship = (status == 1) | (status == 2)
        ship_day = order_day + lead

        statuses = ("placed", "shipped", "delivered", "cancelled")
        ts_l, upd_l = _ts(ts), _ts(updated)
        ship_dates = [
            EPOCH_DATE + timedelta(days=d) if s else None for d, s in zip(ship_day.tolist(), has_ship.tolist())
        ]
        cities = city.tolist()
        store_ids = [self.store_id[s] if s >= 0 else None for s in store.tolist()]
        order_rows = list(
            zip(
                range(first_id, first_id + n),
                [self.cust_id[c] for c in cust.tolist()],
                store_ids,
                ["store" if s else "web" for s in in_store.tolist()],
                ts_l,
                [statuses[s] for s in status.tolist()],
                [cx._SHIP_MODES[x] for x in mode.tolist()],
                [cx._PRIORITIES[x] for x in prio.tolist()],
                ship_dates,
                *geo.location_columns(cities),
                [CURRENCY] * n,
                _ts_or_none(cancelled_at, cancelled),
                ts_l,
                upd_l,
                _ts_or_none(deleted_at, deleted),
            )
        )

        # lines
        k = rng.choice(6, size=n, p=_p(cx._LINES_P)) + 1
        total = int(k.sum())
        owner = np.repeat(np.arange(n), k)
        line_no = np.arange(total) - np.repeat(np.cumsum(k) - k, k) + 1
        prod = np.minimum(
            np.searchsorted(self.prod_cum, rng.random(total) * self.prod_cum[-1], side="right"), self.n_products - 1
        )
        qty = rng.choice(len(cx._QTY_P), size=total, p=_p(cx._QTY_P)) + 1
        disc = rng.choice(len(cx._DISCOUNT_P), size=total, p=_p(cx._DISCOUNT_P))
        disc = np.where(in_store[owner] & (rng.random(total) < 0.7), 0, disc)
        price = self.prod_price[prod]
        ship_cost = np.round(
            price * qty * 0.06 * cx._SHIP_COST_FACTOR[mode[owner]] * rng.lognormal(0.0, 0.25, total)
        ).astype(np.int64)
        ship_cost = np.where(in_store[owner], 0, ship_cost)
        line_deleted = (line_no > 1) & (status[owner] != 3) & (rng.random(total) < P_DELETED_LINE)
        line_deleted_at = ts[owner] + (60 + np.floor(rng.random(total) * 3600).astype(np.int64)) * US
        discounts = [Decimal(i).scaleb(-1) for i in range(len(cx._DISCOUNT_P))]
        created_l = [ts_l[o] for o in owner.tolist()]
        line_upd = _ts_or_none(line_deleted_at, line_deleted)
        line_rows = list(
            zip(
                range(first_line_id, first_line_id + total),
                (owner + first_id).tolist(),
                line_no.tolist(),
                [self.prod_id[p] for p in prod.tolist()],
                qty.tolist(),
                [self.prod_price_dec[p] for p in prod.tolist()],
                [discounts[d] for d in disc.tolist()],
                [self.prod_cost_dec[p] for p in prod.tolist()],
                _money(ship_cost),
                created_l,
                [u or c for u, c in zip(line_upd, created_l)],
                line_upd,
            )
        )
        return order_rows, line_rows


# --------------------------------------------------------------------------- mutate


def _mutate(
    conn: psycopg.Connection, shown: str, seed: int, orders: int, round_no: int, loaded: dict[str, int]
) -> OltpSummary:
    """One round of realistic changes, one transaction per kind of change."""
    rng = np.random.default_rng([seed, 1000, round_no])
    geo = _Geo(seed)
    changes: dict[str, int] = {}
    stamps: list[datetime] = []
    kinds: list[Callable[[], dict[str, int]]] = [
        lambda: _customer_changes(conn, rng, geo),
        lambda: _product_changes(conn, rng),
        lambda: _shipments(conn, rng),
        lambda: _cancellations(conn, rng),
    ]
    for kind in kinds:
        with conn.transaction():
            stamps.append(_begin_change(conn))
            changes.update(kind())

    # new orders -------------------------------------------------------------------------
    with conn.transaction():
        stamps.append(_begin_change(conn))
        new_orders, new_lines = _new_orders(conn, rng, orders)
        changes["new_orders"] = new_orders
        changes["new_order_lines"] = new_lines
        shared = conn.execute(
            "SELECT updated_at, count(*) FROM ("
            + " UNION ALL ".join(f"SELECT updated_at FROM {t} WHERE updated_at >= %s" for t in TABLES)
            + ") u GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1",
            [stamps[0]] * len(TABLES),
        ).fetchone()
        conn.execute(
            f"INSERT INTO {LOG_TABLE} (run_no, kind, seed, orders, counts) "
            f"SELECT coalesce(max(run_no), 0) + 1, 'mutate', %s, %s, %s::jsonb FROM {LOG_TABLE}",
            (seed, orders, json.dumps(changes)),
        )

    summary = OltpSummary("mutated", shown, seed, orders, _counts(conn), loaded=loaded, changes=changes, round=round_no)
    if shared:
        summary.shared_updated_at = shared[0].isoformat()
        summary.shared_updated_at_rows = int(shared[1])
    return summary


def _begin_change(conn: psycopg.Connection) -> datetime:
    """Start one kind of change in the open transaction: the lock, and its ``now()``."""
    conn.execute("SET LOCAL lock_timeout = '10s'")
    _lock(conn)
    return one_row(conn.execute("SELECT now()"))[0]


def _ids(conn: psycopg.Connection, query: str, params: Sequence | None = None) -> list:
    """The first column of ``query``'s rows."""
    return [r[0] for r in conn.execute(query, params).fetchall()]


def _customer_changes(conn: psycopg.Connection, rng: np.random.Generator, geo: _Geo) -> dict[str, int]:
    """Customers: moves and segment changes."""
    ids = _ids(conn, "SELECT customer_id FROM customers WHERE deleted_at IS NULL ORDER BY customer_id")
    movers = _sample(rng, ids, 0.01, 3)
    moved = _move_customers(conn, rng, geo, movers)
    switchers = _sample(rng, ids, 0.005, 2)
    segments = conn.execute(
        "SELECT customer_id, segment FROM customers WHERE customer_id = ANY(%s) ORDER BY customer_id", (switchers,)
    ).fetchall()
    new_segment = [cx._SEGMENTS[(cx._SEGMENTS.index(s) + 1 + int(rng.integers(2))) % 3] for _, s in segments]
    cur = conn.execute(
        "UPDATE customers c SET segment = v.segment, updated_at = now() "
        "FROM unnest(%s::text[], %s::text[]) AS v(customer_id, segment) WHERE c.customer_id = v.customer_id",
        ([i for i, _ in segments], new_segment),
    )
    return {"customer_moves": moved, "customer_segment_changes": cur.rowcount}


def _product_changes(conn: psycopg.Connection, rng: np.random.Generator) -> dict[str, int]:
    """Products: prices and names."""
    ids = _ids(conn, "SELECT product_id FROM products WHERE deleted_at IS NULL ORDER BY product_id")
    repriced = _sample(rng, ids, 0.03, 3)
    factor = np.round(0.85 + rng.random(len(repriced)) * 0.35, 4).tolist()
    cur = conn.execute(
        "UPDATE products p SET list_price = greatest(round(p.list_price * v.f, 2), 0.01), "
        "unit_cost = round(p.unit_cost * v.f, 2), updated_at = now() "
        "FROM unnest(%s::text[], %s::numeric[]) AS v(product_id, f) WHERE p.product_id = v.product_id",
        (repriced, [Decimal(str(f)) for f in factor]),
    )
    changes = {"product_price_changes": cur.rowcount}
    renamed = _sample(rng, ids, 0.01, 2)
    suffixes = [_RENAMES[int(rng.integers(len(_RENAMES)))] for _ in renamed]
    suffixes[0] = '"Limited"' + SQL_INJECTION_TEXT  # SQL-looking text arrives by update, too
    cur = conn.execute(
        "UPDATE products p SET product_name = p.product_name || ' ' || v.suffix, updated_at = now() "
        "FROM unnest(%s::text[], %s::text[]) AS v(product_id, suffix) WHERE p.product_id = v.product_id",
        (renamed, suffixes),
    )
    changes["product_name_changes"] = cur.rowcount
    return changes


def _shipments(conn: psycopg.Connection, rng: np.random.Generator) -> dict[str, int]:
    """Shipments and deliveries."""
    placed = _ids(conn, _PLACED_ORDERS)
    to_ship = _sample(rng, placed, 0.6, 1)
    lead = [int(rng.integers(0, 6)) for _ in to_ship]
    cur = conn.execute(
        "UPDATE orders o SET status = 'shipped', ship_date = least((o.order_ts AT TIME ZONE 'UTC')::date + v.lead, "
        "current_date), updated_at = now() "
        "FROM unnest(%s::bigint[], %s::int[]) AS v(order_id, lead) WHERE o.order_id = v.order_id",
        (to_ship, lead),
    )
    changes = {"orders_shipped": cur.rowcount}
    to_deliver = _sample_orders(conn, rng, "status = 'shipped' AND deleted_at IS NULL", to_ship, 0.5, 1)
    changes["orders_delivered"] = _set_orders(conn, "status = 'delivered', updated_at = now()", to_deliver)
    return changes


def _cancellations(conn: psycopg.Connection, rng: np.random.Generator) -> dict[str, int]:
    """Cancellations, soft deletes, removed lines."""
    placed = _ids(conn, _PLACED_ORDERS)
    to_cancel = _sample(rng, placed, 0.15, 1)
    cancelled = "status = 'cancelled', cancelled_at = now(), ship_date = NULL, updated_at = now()"
    changes = {"orders_cancelled": _set_orders(conn, cancelled, to_cancel)}
    to_delete = _sample_orders(conn, rng, "deleted_at IS NULL AND status <> 'cancelled'", to_cancel, 0.0005, 2)
    changes["orders_deleted"] = _set_orders(conn, "deleted_at = now(), updated_at = now()", to_delete)
    multi = _ids(
        conn,
        "SELECT l.order_line_id FROM order_lines l JOIN orders o USING (order_id) "
        "WHERE o.status = 'placed' AND o.deleted_at IS NULL AND l.deleted_at IS NULL AND l.line_no > 1 "
        "ORDER BY l.order_line_id",
    )
    to_remove = _sample(rng, multi, 0.05, 1)
    cur = conn.execute(
        "UPDATE order_lines SET deleted_at = now(), updated_at = now() WHERE order_line_id = ANY(%s)", (to_remove,)
    )
    changes["order_lines_deleted"] = cur.rowcount
    conn.execute(
        "UPDATE orders SET updated_at = now() WHERE order_id IN "
        "(SELECT order_id FROM order_lines WHERE order_line_id = ANY(%s))",
        (to_remove,),
    )
    return changes


_PLACED_ORDERS = "SELECT order_id FROM orders WHERE status = 'placed' AND deleted_at IS NULL ORDER BY order_id"


def _sample_orders(
    conn: psycopg.Connection, rng: np.random.Generator, where: str, changed: list, share: float, minimum: int
) -> list:
    """A sample (as :func:`_sample`) of the orders matching ``where`` that this change has
    not already changed (``changed``)."""
    query = f"SELECT order_id FROM orders WHERE {where} AND NOT (order_id = ANY(%s)) ORDER BY order_id"
    return _sample(rng, _ids(conn, query, (changed,)), share, minimum)


def _set_orders(conn: psycopg.Connection, assignments: str, order_ids: list) -> int:
    """``UPDATE orders SET assignments`` of ``order_ids``; returns how many rows changed."""
    return conn.execute(f"UPDATE orders SET {assignments} WHERE order_id = ANY(%s)", (order_ids,)).rowcount


def _sample(rng: np.random.Generator, ids: list, share: float, minimum: int) -> list:
    """A deterministic sample of about ``share`` of ``ids`` (at least ``minimum``), in id order."""
    if not ids:
        return []
    k = min(len(ids), max(minimum, int(round(len(ids) * share))))
    picked = np.sort(rng.choice(len(ids), size=k, replace=False))
    return [ids[i] for i in picked.tolist()]


def _move_customers(conn: psycopg.Connection, rng: np.random.Generator, geo: _Geo, ids: list[str]) -> int:
    """New address: another city of the same country (or of the same region), new street."""
    m = geo.m
    rows = conn.execute(
        "SELECT customer_id, city, country FROM customers WHERE customer_id = ANY(%s) ORDER BY customer_id", (ids,)
    ).fetchall()
    lookup = {(m.city_name[c], geo.city_country_name[c]): c for c in range(len(m.city_name))}
    values: dict[str, list] = {k: [] for k in ("id", "addr", "city", "state", "country", "postal", "region", "market")}
    for customer_id, city_name, country in rows:
        current = lookup.get((city_name, country))
        if current is None:
            choices = np.arange(len(m.city_name))
        else:
            choices = geo.cities_of_country[int(geo.city_country[current])]
            choices = choices[choices != current]
            if len(choices) == 0:
                choices = geo.cities_of_region[int(geo.city_region[current])]
                choices = choices[choices != current] if len(choices) > 1 else choices
        c = int(rng.choice(choices))
        values["id"].append(customer_id)
        values["addr"].append(f"{int(rng.integers(1, 250))} {_STREETS[int(rng.integers(len(_STREETS)))]}")
        values["city"].append(m.city_name[c])
        values["state"].append(m.city_state[c] or None)
        values["country"].append(geo.city_country_name[c])
        values["postal"].append(m.city_postal[c] or None)
        values["region"].append(geo.city_label[c])
        values["market"].append(geo.city_market[c])
    cur = conn.execute(
        "UPDATE customers c SET address_line = v.addr, city = v.city, state = v.state, country = v.country, "
        "postal_code = v.postal, region = v.region, market = v.market, updated_at = now() "
        "FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[]) "
        "AS v(id, addr, city, state, country, postal, region, market) WHERE c.customer_id = v.id",
        [values[k] for k in ("id", "addr", "city", "state", "country", "postal", "region", "market")],
    )
    return cur.rowcount


def _new_orders(conn: psycopg.Connection, rng: np.random.Generator, fill_orders: int) -> tuple[int, int]:
    """About 0.5 % new orders (at least 10) placed now, at today's list prices."""
    n = max(10, int(round(fill_orders * 0.005)))
    customers = _ids(conn, "SELECT customer_id FROM customers WHERE deleted_at IS NULL ORDER BY customer_id")
    stores = conn.execute("SELECT store_id, region FROM stores WHERE deleted_at IS NULL ORDER BY store_id").fetchall()
    products = _ids(conn, "SELECT product_id FROM products WHERE deleted_at IS NULL ORDER BY product_id")
    first_order = int(one_row(conn.execute("SELECT coalesce(max(order_id), 0) + 1 FROM orders"))[0])
    first_line = int(one_row(conn.execute("SELECT coalesce(max(order_line_id), 0) + 1 FROM order_lines"))[0])
    cust = [customers[i] for i in rng.integers(len(customers), size=n).tolist()]
    region_of: dict[str, str] = dict(
        conn.execute("SELECT customer_id, region FROM customers WHERE customer_id = ANY(%s)", (cust,)).fetchall()
    )
    by_region: dict[str, list[str]] = {}
    for store_id, region in stores:
        by_region.setdefault(region, []).append(store_id)
    store: list[str | None] = []
    for c in cust:
        options = by_region.get(region_of[c], [])
        store.append(options[int(rng.integers(len(options)))] if options and rng.random() < P_STORE else None)
    prio = rng.choice(4, size=n, p=cx._PRIORITY_P)
    mode_cum = np.cumsum(cx._MODE_GIVEN_PRIORITY, axis=1)
    mode = np.minimum((rng.random(n)[:, None] > mode_cum[prio]).sum(axis=1), 3)
    order_ids = list(range(first_order, first_order + n))
    conn.execute(
        "INSERT INTO orders (order_id, customer_id, store_id, channel, order_ts, status, ship_mode, order_priority, "
        "ship_date, ship_city, ship_state, ship_country, ship_postal_code, ship_region, ship_market, currency, "
        "created_at, updated_at) "
        "SELECT v.order_id, c.customer_id, v.store_id, CASE WHEN v.store_id IS NULL THEN 'web' ELSE 'store' END, now(), "
        "CASE WHEN v.store_id IS NULL THEN 'placed' ELSE 'delivered' END, "
        "CASE WHEN v.store_id IS NULL THEN v.ship_mode ELSE 'Same Day' END, "
        "CASE WHEN v.store_id IS NULL THEN v.prio ELSE 'Medium' END, "
        "CASE WHEN v.store_id IS NULL THEN NULL ELSE (now() AT TIME ZONE 'UTC')::date END, "
        "c.city, c.state, c.country, c.postal_code, c.region, c.market, %s, now(), now() "
        "FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[]) "
        "AS v(order_id, customer_id, store_id, ship_mode, prio) JOIN customers c USING (customer_id)",
        (
            CURRENCY,
            order_ids,
            cust,
            store,
            [cx._SHIP_MODES[x] for x in mode.tolist()],
            [cx._PRIORITIES[x] for x in prio.tolist()],
        ),
    )
    k = rng.choice(6, size=n, p=_p(cx._LINES_P)) + 1
    total = int(k.sum())
    owner = np.repeat(np.arange(n), k)
    line_no = np.arange(total) - np.repeat(np.cumsum(k) - k, k) + 1
    prod = [products[i] for i in rng.integers(len(products), size=total).tolist()]
    qty = (rng.choice(len(cx._QTY_P), size=total, p=_p(cx._QTY_P)) + 1).tolist()
    disc = [Decimal(int(i)).scaleb(-1) for i in rng.choice(len(cx._DISCOUNT_P), size=total, p=_p(cx._DISCOUNT_P))]
    factor = np.round(0.06 * rng.lognormal(0.0, 0.25, total), 4).tolist()
    conn.execute(
        "INSERT INTO order_lines (order_line_id, order_id, line_no, product_id, quantity, unit_price, discount, "
        "unit_cost, shipping_cost, created_at, updated_at) "
        "SELECT v.line_id, v.order_id, v.line_no, p.product_id, v.qty, p.list_price, v.disc, p.unit_cost, "
        "CASE WHEN o.store_id IS NULL THEN round(p.list_price * v.qty * v.f, 2) ELSE 0 END, now(), now() "
        "FROM unnest(%s::bigint[], %s::bigint[], %s::int[], %s::text[], %s::int[], %s::numeric[], %s::numeric[]) "
        "AS v(line_id, order_id, line_no, product_id, qty, disc, f) "
        "JOIN products p USING (product_id) JOIN orders o ON o.order_id = v.order_id",
        (
            list(range(first_line, first_line + total)),
            [order_ids[i] for i in owner.tolist()],
            line_no.tolist(),
            prod,
            qty,
            disc,
            [Decimal(str(f)) for f in factor],
        ),
    )
    return n, total
