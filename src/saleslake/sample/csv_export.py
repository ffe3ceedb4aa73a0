"""Realistic, deterministic, streaming sample data: regional sales CSV exports.

Writes one file per region per day, ``<out>/<region>/<region>_<YYYY-MM-DD>.csv``, in the
24-field Global-Superstore layout of CONTRACT §2, with a chosen share of defective rows
(CONTRACT §4), exact repeats and corrections of earlier lines, SCD2 changes of customers
and products, late-arriving lines and a few outliers. Every count that a correct pipeline
must reproduce is written to ``<out>/generation_summary.json``::

    from saleslake.sample.csv_export import generate_csv
    summary = generate_csv(Path("exports"), rows=100_000, error_rate=0.02, seed=42)
    summary.valid_unique_lines, summary.expected_silver_sales

Dialects, fixed per region (a region is one ERP; ground truth also in the summary):

==============  =========  =======  ============  ===  ====
region          delimiter  decimal  dates         BOM  EOL
==============  =========  =======  ============  ===  ====
africa          ``,``      ``.``    dd-mm-yyyy    no   LF
canada          ``,``      ``.``    dd/mm/yy      no   LF
caribbean       ``,``      ``.``    dd-mm-yyyy    no   LF
central         ``;``      ``,``    dd/mm/yyyy    no   CRLF
central_asia    ``,``      ``.``    dd-mm-yyyy    no   LF
east            ``,``      ``.``    mm/dd/yyyy    no   CRLF
emea            ``,``      ``.``    dd-mm-yyyy    yes  LF
north           ``;``      ``,``    dd/mm/yyyy    no   LF
north_asia      ``,``      ``.``    dd-mm-yyyy    no   LF
oceania         ``,``      ``.``    dd-mm-yyyy    no   LF
south           ``,``      ``.``    dd-mm-yyyy    no   LF
southeast_asia  ``,``      ``.``    dd-mm-yyyy    no   LF
west            ``,``      ``.``    mm/dd/yyyy    no   LF
==============  =========  =======  ============  ===  ====

All files are UTF-8 (city names such as ``München`` or ``São Paulo``). Fields are quoted
only when needed (they contain the delimiter or a double quote; quotes are doubled), so
product names like ``Tenex Chairmat, 45" x 53"`` are quoted in comma files. Numbers have
no thousands separator; money has 2 to 4 decimals (``123.45``, ``3709.395``), discounts
are ``0``, ``0.2`` … ``0.7``. Postal codes are text (``02108``, ``0150``, ``00100``) and
mostly empty outside the US.

What the data contains (rates are shares of rows):

* Row ID: a global integer counter (1, 2, …) in the order lines are first exported.
  Order ID ``<ISO country>-<order year>-<7 digits>``; 1–6 lines per order.
* Order date mostly the file's day; about 3 % of orders arrive late, up to 60 days
  earlier. Every file with a valid line holds at least one date with a day of month
  above 12, so day-first and month-first layouts can be told apart per file. Ship date
  0–7 days after the order date, empty for about 2 % (not shipped yet).
* Sales is the gross line amount, unit price × quantity (CONTRACT §3); discount is a
  separate fraction; profit may be negative. About 1 line in 8,000 is made an outlier above
  10,000 (plus about as many that occur naturally).
* SCD2: about 5 % of customers change segment and/or name, about 3 % of products change
  name or sub-category, each at a fixed date; a line carries the attributes valid on its
  order date (IDs never change).
* ``error_rate`` of the rows are defective, spread over every reason code of CONTRACT §4;
  about 12 % of them carry two (independent) defects. Defective rows have their own new
  Row ID (or an empty one for ``missing_required:line_id``).
* About 0.5 % of rows are exact repeats and 0.5 % corrections of a valid line exported
  by the same region in one of the previous 7 files: same Order ID and Row ID, the repeat
  byte-identical, the correction with changed quantity (and so sales, profit, shipping
  cost), discount (and profit), unit price (sales, profit) or ship date. Each original is
  re-sent at most once; repeats and corrections are never defective, and defective rows
  are never re-sent. So the latest landed version of a (region, Order ID, Row ID) wins.

Same arguments give byte-identical files. Generation is vectorised per day (all regions
at once) and streams to disk: memory stays bounded whatever ``rows`` is.
"""

from __future__ import annotations

import json
import math
import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from saleslake.contract import CSV_FIELDS, REQUIRED_FIELDS
from saleslake.errors import UserError
from saleslake.sample import catalog

__all__ = [
    "DEFAULT_ROWS",
    "OUTLIER_THRESHOLD",
    "REGIONS",
    "SUMMARY_FILE",
    "City",
    "Country",
    "Dialect",
    "GenerationSummary",
    "MasterData",
    "RegionSpec",
    "file_days",
    "generate_csv",
    "master_data",
]

DEFAULT_ROWS = 100_000
FIRST_DAY = date(2021, 1, 1)
ROWS_PER_FILE = 500
MIN_DAYS, MAX_DAYS = 7, 1461
OUTLIER_THRESHOLD = 10_000
SUMMARY_FILE = "generation_summary.json"

# --------------------------------------------------------------------------------------
# Reference data: regions, dialects, geography (package data, saleslake/sample/data/geography.toml)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dialect:
    """How one regional ERP writes its exports."""

    delimiter: str = ","
    decimal: str = "."
    date_format: str = "%d-%m-%Y"  # strftime notation
    bom: bool = False
    crlf: bool = False

    @property
    def line_end(self) -> str:
        return "\r\n" if self.crlf else "\n"

    @property
    def encoding(self) -> str:
        return "utf-8-sig" if self.bom else "utf-8"


@dataclass(frozen=True)
class City:
    name: str
    state: str
    postal_code: str = ""
    weight: float = 1.0


@dataclass(frozen=True)
class Country:
    name: str
    code: str  # ISO 3166 alpha-2, the Order ID prefix
    market: str
    cities: tuple[City, ...]


@dataclass(frozen=True)
class RegionSpec:
    key: str  # file and folder name
    label: str  # value of the Region column
    countries: tuple[Country, ...]
    dialect: Dialect
    postal_share: float = 0.0  # share of lines carrying the city's postal code
    weight: float = 1.0  # relative volume

    @property
    def market(self) -> str:
        return self.countries[0].market

    @property
    def markets(self) -> list[str]:
        return sorted({c.market for c in self.countries})


def _region(key: str, spec: dict) -> RegionSpec:
    """A region of ``data/geography.toml`` (see its header for the fields)."""
    countries = tuple(
        Country(
            c["name"],
            c["code"],
            c["market"],
            tuple(
                City(x["name"], x["state"], x.get("postal_code", ""), float(x.get("weight", 1.0))) for x in c["cities"]
            ),
        )
        for c in spec["countries"]
    )
    return RegionSpec(key, spec["label"], countries, Dialect(**spec["dialect"]), spec["postal_share"], spec["weight"])


REGIONS: dict[str, RegionSpec] = {key: _region(key, spec) for key, spec in catalog.load("geography")["regions"].items()}

# --------------------------------------------------------------------------------------
# Reference data: catalog and people (package data, saleslake/sample/data/*.toml)
# --------------------------------------------------------------------------------------

# (category, code, sub-category, code, median unit price, price spread, base margin, share)
_SUBCATEGORIES = tuple(
    (
        s["category"],
        s["category_code"],
        s["name"],
        s["code"],
        s["median_price"],
        s["price_spread"],
        s["base_margin"],
        s["share"],
    )
    for s in catalog.load("products")["subcategories"]
)
_BRANDS = {category: tuple(names) for category, names in catalog.load("products")["brands"].items()}
_NOUNS = {sub_category: tuple(names) for sub_category, names in catalog.load("products")["nouns"].items()}
_VARIANTS = catalog.strings("products", "variants")
_SIZES = catalog.strings("products", "sizes")
_FIRST_NAMES = catalog.strings("people", "first_names")
_LAST_NAMES = catalog.strings("people", "last_names")

_SEGMENTS = ("Consumer", "Corporate", "Home Office")
_SEGMENT_P = (0.52, 0.30, 0.18)
_SHIP_MODES = ("Same Day", "First Class", "Second Class", "Standard Class")
_SHIP_DAYS = ((0, 1), (1, 3), (2, 5), (4, 7))  # inclusive range of days per ship mode
_SHIP_COST_FACTOR = np.array([2.0, 1.5, 1.2, 1.0])
_PRIORITIES = ("Critical", "High", "Medium", "Low")
_PRIORITY_P = (0.07, 0.30, 0.57, 0.06)
# P(ship mode | priority), rows as _PRIORITIES, columns as _SHIP_MODES (Global Superstore).
_MODE_GIVEN_PRIORITY = np.array(
    [[0.19, 0.44, 0.37, 0.0], [0.08, 0.22, 0.26, 0.44], [0.02, 0.08, 0.16, 0.74], [0.0, 0.0, 0.0, 1.0]]
)
_LINES_P = (0.35, 0.25, 0.17, 0.11, 0.07, 0.05)
_QTY_P = (8963, 12748, 9682, 6385, 4882, 3020, 2385, 1361, 987, 276, 156, 176, 83, 186)
_DISCOUNT_P = (29009, 4068, 4998, 340, 3177, 1633, 2006, 1786)  # 0.0 .. 0.7

P_DUPLICATE = 0.005
P_CORRECTION = 0.005
P_LATE = 0.03
P_UNSHIPPED = 0.02
P_OUTLIER = 1 / 8000
P_TWO_DEFECTS = 0.15
POOL_DAYS = 7  # repeats and corrections re-send lines of the previous 7 files
N_PRODUCTS = 3000
CUSTOMER_CHANGE_SHARE = 0.05
PRODUCT_CHANGE_SHARE = 0.03

# Defect kinds: (reason code, fields the defect touches). Two defects on one row never
# touch a common field, so each row's reasons are exactly its kinds' codes.
_DEFECTS = (
    *((f"missing_required:{f}", {f}) for f in REQUIRED_FIELDS),
    ("invalid_date:order_date", {"order_date"}),
    ("invalid_date:ship_date", {"ship_date"}),
    ("invalid_number:sales", {"sales"}),
    ("invalid_number:quantity", {"quantity"}),
    ("invalid_number:discount", {"discount"}),
    ("invalid_number:profit", {"profit"}),
    ("invalid_number:shipping_cost", {"shipping_cost"}),
    ("non_positive_quantity", {"quantity"}),
    ("non_positive_sales", {"sales"}),
    ("discount_out_of_range", {"discount"}),
    ("ship_before_order", {"order_date", "ship_date"}),
)
_DEFECT_CODES = tuple(code for code, _ in _DEFECTS)
_DEFECT_INDEX = {code: i for i, code in enumerate(_DEFECT_CODES)}
_DEFECT_WEIGHTS = np.array(
    [
        *(5, 4, 4, 8, 6, 5, 5),  # missing: order_id line_id order_date customer_id product_id quantity sales
        7,
        5,  # invalid dates
        7,
        5,
        4,
        4,
        3,  # invalid numbers
        7,
        7,
        6,
        8,  # non-positive quantity/sales, discount range, ship before order
    ],
    dtype=float,
)
_DEFECT_WEIGHTS /= _DEFECT_WEIGHTS.sum()
_DEFECT_COMPATIBLE = np.array([[not (a[1] & b[1]) for b in _DEFECTS] for a in _DEFECTS])
_INVALID_NUMBERS = ("abc", "12,3x", "#VALUE!", "1O.5")
_INVALID_DATES_GENERIC = ("not a date", "##########")
_INVALID_DAY_MONTH = ((30, 2), (31, 2), (31, 4), (31, 9), (31, 11))
_BAD_DISCOUNT = np.array([11, 12, 15, 20, -1, -2])
_DATE_FORMATS = ("%d-%m-%Y", "%d/%m/%Y", "%m/%d/%Y", "%d/%m/%y")
_DATE_OFFSET = 120  # date index 0 is FIRST_DAY - 120 days
_ORDER_NO_MULT, _ORDER_NO_SPAN = 7_654_321, 9_000_000  # a bijection of 7-digit numbers

_FIELD_ORDER = tuple(CSV_FIELDS)  # headers in export order
_COLS = (
    "region", "row_id", "order_no", "city", "odate", "sdate", "smode", "prio", "cust", "postal",
    "prod", "qty", "d10", "price", "sales", "profit", "shipc",
)  # fmt: skip


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


@dataclass
class GenerationSummary:
    """What was written, and what a correct pipeline must end up with."""

    files: int
    rows_written: int
    valid_unique_lines: int
    exact_duplicates: int
    corrections: int
    defective_rows: int
    defects_by_reason: dict[str, int]
    expected_silver_sales: str
    outliers: int
    regions: list[str]
    seed: int
    first_date: str  # first export day (file date)
    last_date: str  # last export day
    error_rate: float = 0.0
    two_defect_rows: int = 0
    rows_by_region: dict[str, int] = field(default_factory=dict)
    dialects: dict[str, dict[str, object]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False, ensure_ascii=False)


@dataclass(frozen=True)
class MasterData:
    """The generator's master data for one seed (and size): geography, product catalog and
    customers, in their first (pre-SCD2-change) state. Other simulators (the point-of-sale
    events) build on it so that their product and customer ids are the exports' ids.

    Cities are grouped by region in ``regions`` order; ``city_country`` indexes the
    ``country_*`` lists, ``city_region`` and ``customer_region`` index ``regions``,
    ``customer_city`` indexes the cities. Prices are integers in ten-thousandths.
    """

    regions: list[str]
    region_labels: list[str]
    country_name: list[str]
    country_code: list[str]  # ISO 3166 alpha-2
    country_market: list[str]
    city_name: list[str]
    city_state: list[str]
    city_postal: list[str]  # "" when the city has none
    city_country: np.ndarray
    city_region: np.ndarray
    city_weight: np.ndarray
    product_id: list[str]
    product_name: list[str]
    category: list[str]
    sub_category: list[str]
    list_price_e4: np.ndarray
    popularity: np.ndarray  # relative sales volume of each product
    customer_id: list[str]
    customer_name: list[str]
    segment: list[str]
    customer_region: np.ndarray
    customer_city: np.ndarray
    customer_activity: np.ndarray  # relative order volume of each customer


def master_data(seed: int = 42, rows: int = DEFAULT_ROWS, regions: Sequence[str] | None = None) -> MasterData:
    """The master data :func:`generate_csv` uses for the same ``seed``, ``rows`` and ``regions``.

    Product ids, names and prices depend on ``seed`` only; customers depend on ``rows`` and
    ``regions`` too (their number grows with the export). Nothing is written.
    """
    return _Master(rows, regions, seed).master_data()


def file_days(rows: int, n_regions: int) -> int:
    """Number of consecutive export days for ``rows`` rows over ``n_regions`` regions."""
    return min(max(rows // (max(n_regions, 1) * ROWS_PER_FILE), MIN_DAYS), MAX_DAYS)


def generate_csv(
    out_dir: Path,
    rows: int = DEFAULT_ROWS,
    regions: Sequence[str] | None = None,
    error_rate: float = 0.02,
    seed: int = 42,
    progress: Callable[[int], None] | None = None,
) -> GenerationSummary:
    """Write the regional exports under ``out_dir`` and return (and write) the summary.

    ``progress(n)`` is called after each export day with the number of rows written.
    Raises :class:`~saleslake.errors.UserError` for bad arguments. Writing again into a
    folder this generator wrote (one with a ``generation_summary.json``) replaces its
    exports, removing those the new run does not produce; a folder with other files in
    the region folders is refused.
    """
    gen = _Generator(Path(out_dir), rows, regions, error_rate, seed)
    return gen.run(progress)


# --------------------------------------------------------------------------------------
# Implementation
# --------------------------------------------------------------------------------------


def _quote(value: str, delimiter: str) -> str:
    if delimiter in value or '"' in value or "\n" in value or "\r" in value:
        return '"' + value.replace('"', '""') + '"'
    return value


def _render_date(fmt: str, day: int, month: int, year: int) -> str:
    return (
        fmt.replace("%d", f"{day:02d}")
        .replace("%m", f"{month:02d}")
        .replace("%Y", f"{year:04d}")
        .replace("%y", f"{year % 100:02d}")
    )


def _frac_table() -> pa.Array:
    """Fraction digits of 0..9999 ten-thousandths, trailing zeros cut to 2 digits."""
    out = []
    for f in range(10_000):
        s = f"{f:04d}"
        while len(s) > 2 and s.endswith("0"):
            s = s[:-1]
        out.append(s)
    return pa.array(out)


def _p(weights: Sequence[float]) -> np.ndarray:
    a = np.asarray(weights, dtype=float)
    return a / a.sum()


def _pick_weighted(rng: np.random.Generator, cum: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """For each row, an index in [lo, hi) drawn with the weights whose cumsum is ``cum``."""
    base = np.where(lo > 0, cum[np.maximum(lo - 1, 0)], 0.0)
    top = cum[hi - 1]
    idx = np.searchsorted(cum, base + rng.random(len(lo)) * (top - base), side="right")
    return np.clip(idx, lo, hi - 1)


def _check_rows(rows: int) -> None:
    if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or rows < 0:
        raise UserError(f"rows must be a non-negative integer, got {rows!r}")


class _Master:
    """Geography, product catalog and customers of one (rows, regions, seed): the part of
    the generator that other simulators reuse (:func:`master_data`) so their ids match."""

    def __init__(self, rows: int, regions: Sequence[str] | None, seed: int):
        _check_rows(rows)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise UserError(f"seed must be a non-negative integer, got {seed!r}")
        if regions is None:
            keys = list(REGIONS)
        else:
            wanted = {str(r).strip().lower().replace("-", "_").replace(" ", "_") for r in regions}
            wanted.discard("")
            unknown = sorted(wanted - set(REGIONS))
            if unknown:
                raise UserError(f"unknown region(s) {', '.join(unknown)}; known: {', '.join(REGIONS)}")
            if not wanted:
                raise UserError("no region given")
            keys = [k for k in REGIONS if k in wanted]  # canonical order, whatever was asked
        self.rows = int(rows)
        self.keys = keys
        self.specs = [REGIONS[k] for k in keys]
        self.R = len(keys)
        self.seed = int(seed)
        self.days = file_days(self.rows, self.R)
        self.n_dates = _DATE_OFFSET + self.days + 40

        self._build_geography()
        self._build_products(np.random.default_rng([self.seed, 1]))
        self._build_customers(np.random.default_rng([self.seed, 2]))

    def master_data(self) -> MasterData:
        n, c = self.n_products, self.n_customers
        return MasterData(
            regions=list(self.keys),
            region_labels=self.region_label.to_pylist(),
            country_name=self.country_name.to_pylist(),
            country_code=list(self.country_code),
            country_market=self.country_market.to_pylist(),
            city_name=self.city_name.to_pylist(),
            city_state=self.city_state.to_pylist(),
            city_postal=self.city_postal.to_pylist()[: self.n_cities],
            city_country=self.city_country.copy(),
            city_region=self.city_region.copy(),
            city_weight=np.diff(self.city_cum, prepend=0.0),
            product_id=self.prod_id.to_pylist(),
            product_name=self.prod_name[:n],
            category=self.prod_category.to_pylist(),
            sub_category=self.prod_sub.to_pylist()[:n],
            list_price_e4=self.prod_price.copy(),
            popularity=self.prod_popularity.copy(),
            customer_id=self.cust_id.to_pylist(),
            customer_name=self.cust_name.to_pylist()[:c],
            segment=self.cust_segment.to_pylist()[:c],
            customer_region=self.cust_region.copy(),
            customer_city=self.cust_city.copy(),
            customer_activity=np.diff(self.cust_cum, prepend=0.0),
        )

    # ---- reference tables ---------------------------------------------------------

    def _build_geography(self) -> None:
        names: list[str] = []
        states: list[str] = []
        postals: list[str] = []
        countries: list[int] = []
        weights: list[float] = []
        city_region: list[int] = []
        country_names: list[str] = []
        country_codes: list[str] = []
        country_markets: list[str] = []
        self.city_lo = np.zeros(self.R, dtype=np.int64)
        self.city_hi = np.zeros(self.R, dtype=np.int64)
        for r, spec in enumerate(self.specs):
            self.city_lo[r] = len(names)
            for country in spec.countries:
                ci = len(country_names)
                country_names.append(country.name)
                country_codes.append(country.code)
                country_markets.append(country.market)
                for city in country.cities:
                    names.append(city.name)
                    states.append(city.state)
                    postals.append(city.postal_code)
                    countries.append(ci)
                    weights.append(city.weight)
                    city_region.append(r)
            self.city_hi[r] = len(names)
        self.n_cities = len(names)
        self.city_name = pa.array(names)
        self.city_state = pa.array(states)
        self.city_postal = pa.array([*postals, ""])  # index n_cities = no postal code
        self.city_has_postal = np.array([bool(p) for p in postals])
        self.city_country = np.array(countries, dtype=np.int64)
        self.city_cum = np.cumsum(np.array(weights, dtype=float))
        self.country_name = pa.array(country_names)
        self.country_code = country_codes
        self.country_market = pa.array(country_markets)
        self.city_region = np.array(city_region, dtype=np.int64)
        self.n_countries = len(country_names)
        self.postal_share = np.array([s.postal_share for s in self.specs])
        self.region_label = pa.array([s.label for s in self.specs])
        # Order ID prefixes "<code>-<year>-" for every country and year a date may fall in.
        self.year0 = (FIRST_DAY - timedelta(days=_DATE_OFFSET)).year
        last_year = (FIRST_DAY + timedelta(days=self.n_dates)).year
        self.n_years = last_year - self.year0 + 1
        self.order_prefix = pa.array(
            [f"{code}-{self.year0 + y}-" for code in country_codes for y in range(self.n_years)]
        )

    def _build_products(self, rng: np.random.Generator) -> None:
        sub = _SUBCATEGORIES
        share = _p([s[7] for s in sub])
        n_per = np.maximum(np.round(share * N_PRODUCTS).astype(int), 10)
        ids, cats, subs0, subs1, names0, names1 = [], [], [], [], [], []
        price_e4, margin = [], []
        sub_by_cat: dict[str, list[int]] = {}
        for si, s in enumerate(sub):
            sub_by_cat.setdefault(s[0], []).append(si)
        sub_of_product = []
        for si, (cat, ccode, subname, scode, median, spread, base_margin, _) in enumerate(sub):
            numbers = rng.choice(5000, size=n_per[si], replace=False) + 10_000_000
            for k in range(n_per[si]):
                ids.append(f"{ccode}-{scode}-{numbers[k]}")
                cats.append(cat)
                subs0.append(subname)
                sub_of_product.append(si)
                names0.append(self._product_name(rng, cat, subname))
                price = float(np.clip(median * math.exp(rng.normal(0.0, spread)), 0.5, min(12 * median, 3800.0)))
                decimals = rng.choice(3, p=(0.75, 0.18, 0.07)) + 2
                scale = 10 ** int(decimals)
                price_e4.append(max(int(round(price * scale)) * (10_000 // scale), 100))
                margin.append(base_margin)
        n = len(ids)
        # SCD2: a few products get a new name or move to another sub-category of the same
        # category, at a fixed date inside the export span (IDs never change).
        changes = rng.random(n) < PRODUCT_CHANGE_SHARE
        rename = rng.random(n) < 0.6
        when = _DATE_OFFSET + np.floor(self.days * (0.1 + 0.8 * rng.random(n))).astype(np.int64)
        self.prod_change = np.where(changes, when, np.iinfo(np.int64).max)
        for i in range(n):
            names1.append(names0[i])
            subs1.append(subs0[i])
            if not changes[i]:
                continue
            if rename[i]:
                new = names0[i]
                while new == names0[i]:
                    new = self._product_name(rng, cats[i], subs0[i])
                names1[i] = new
            else:
                others = [j for j in sub_by_cat[cats[i]] if j != sub_of_product[i]]
                subs1[i] = sub[others[int(rng.integers(len(others)))]][2]
        self.n_products = n
        self.prod_id = pa.array(ids)
        self.prod_category = pa.array(cats)
        self.prod_sub = pa.array(subs0 + subs1)
        self.prod_name = names0 + names1
        self.prod_name_by_delim = [pa.array([_quote(x, d) for x in self.prod_name]) for d in (",", ";")]
        self.prod_price = np.array(price_e4, dtype=np.int64)
        self.prod_margin = np.array(margin)
        popularity = rng.lognormal(0.0, 1.0, n)
        self.prod_popularity = popularity
        self.prod_cum = np.cumsum(popularity)
        premium = np.flatnonzero(self.prod_price >= 800 * 10_000)
        self.premium = premium if len(premium) else np.array([int(np.argmax(self.prod_price))])

    @staticmethod
    def _product_name(rng: np.random.Generator, cat: str, subname: str) -> str:
        brands = _BRANDS[cat]
        brand = brands[int(rng.integers(len(brands)))]
        nouns = _NOUNS[subname]
        noun = nouns[int(rng.integers(len(nouns)))]
        u = rng.random()
        if u < 0.50:
            return f"{brand} {noun}, {_VARIANTS[int(rng.integers(len(_VARIANTS)))]}"
        if u < 0.75:
            letters = "ABCDEFGHJKLMNPRSTVX"
            model = f"{letters[int(rng.integers(len(letters)))]}{int(rng.integers(10, 999))}"
            if rng.random() < 0.3:
                model = f"{int(rng.integers(1, 90)) * 100} Series"
            return f"{brand} {model} {noun}"
        if u < 0.90:
            return f"{brand} {noun}"
        size = _SIZES[int(rng.integers(len(_SIZES)))]
        if rng.random() < 0.5:
            return f"{brand} {size} {noun}"
        return f"{brand} {noun}, {size}"

    def _build_customers(self, rng: np.random.Generator) -> None:
        total = min(max(self.rows // 30, 200), 60_000)
        w = np.array([s.weight for s in self.specs])
        per = np.maximum(np.round(total * w / w.sum()).astype(int), 10)
        n = int(per.sum())
        self.n_customers = n
        self.cust_lo = np.concatenate([[0], np.cumsum(per)[:-1]]).astype(np.int64)
        self.cust_hi = np.cumsum(per).astype(np.int64)
        region = np.repeat(np.arange(self.R), per)
        first = rng.integers(len(_FIRST_NAMES), size=n)
        last = rng.integers(len(_LAST_NAMES), size=n)
        numbers = rng.choice(90_000, size=n, replace=False) + 10_000
        segment = rng.choice(3, size=n, p=_SEGMENT_P)
        self.cust_city = _pick_weighted(rng, self.city_cum, self.city_lo[region], self.city_hi[region])
        activity = rng.lognormal(0.0, 0.8, n)
        self.cust_region = region
        self.cust_cum = np.cumsum(activity)
        # SCD2: ~5 % change segment (40 %), name (35 %) or both (25 %) at a fixed date.
        changes = rng.random(n) < CUSTOMER_CHANGE_SHARE
        kind = rng.choice(3, size=n, p=(0.40, 0.35, 0.25))
        new_segment = np.where(changes & (kind != 1), (segment + rng.integers(1, 3, size=n)) % 3, segment)
        new_last = np.where(
            changes & (kind != 0), (last + rng.integers(1, len(_LAST_NAMES), size=n)) % len(_LAST_NAMES), last
        )
        when = _DATE_OFFSET + np.floor(self.days * (0.1 + 0.8 * rng.random(n))).astype(np.int64)
        self.cust_change = np.where(changes, when, np.iinfo(np.int64).max)
        fn = [_FIRST_NAMES[i] for i in first]
        ids = [f"{fn[i][0]}{_LAST_NAMES[last[i]][0]}-{numbers[i]}" for i in range(n)]
        names = [f"{fn[i]} {_LAST_NAMES[last[i]]}" for i in range(n)]
        names += [f"{fn[i]} {_LAST_NAMES[new_last[i]]}" for i in range(n)]
        self.cust_id = pa.array(ids)
        self.cust_name = pa.array(names)
        self.cust_segment = pa.array([_SEGMENTS[s] for s in segment] + [_SEGMENTS[s] for s in new_segment])


class _Generator(_Master):
    """Writes the exports: counts per region and day, then one vectorised pass per day."""

    def __init__(self, out_dir: Path, rows: int, regions: Sequence[str] | None, error_rate: float, seed: int):
        _check_rows(rows)
        if not (0.0 <= float(error_rate) <= 1.0) or math.isnan(float(error_rate)):
            raise UserError(f"error rate must be between 0 and 1, got {error_rate!r}")
        super().__init__(rows, regions, seed)
        self.out_dir = out_dir
        self.error_rate = float(error_rate)
        self._build_counts(np.random.default_rng([self.seed, 3]))
        self._build_formats()
        self.rng = np.random.default_rng([self.seed, 4])

    def _build_counts(self, rng: np.random.Generator) -> None:
        """Rows per (region, day): weekday, season, growth and noise; sums to ``rows``."""
        days = np.array([FIRST_DAY + timedelta(days=t) for t in range(self.days)])
        weekday = np.array([d.weekday() for d in days])
        month = np.array([d.month for d in days])
        t = np.arange(self.days)
        w_day = np.array([1.0, 1.05, 1.05, 1.0, 0.95, 0.6, 0.45])[weekday]
        w_month = np.array([0.85, 0.85, 0.95, 0.95, 1.0, 1.0, 0.95, 0.95, 1.05, 1.05, 1.2, 1.3])[month - 1]
        w_growth = 1.12 ** (t / 365.0)
        w_region = np.array([s.weight for s in self.specs])
        w = w_region[:, None] * (w_day * w_month * w_growth)[None, :] * rng.lognormal(0.0, 0.12, (self.R, self.days))
        quota = self.rows * w / w.sum()
        counts = np.floor(quota).astype(np.int64)
        rest = self.rows - int(counts.sum())
        if rest:
            order = np.argsort(-(quota - counts).ravel(), kind="stable")[:rest]
            flat = counts.ravel()
            flat[order] += 1
            counts = flat.reshape(counts.shape)
        self.counts = counts

    def _build_formats(self) -> None:
        nd = self.n_dates
        self.fmt_id = np.array([_DATE_FORMATS.index(s.dialect.date_format) for s in self.specs])
        self.delim_id = np.array([0 if s.dialect.delimiter == "," else 1 for s in self.specs])
        self.dec_id = np.array([0 if s.dialect.decimal == "." else 1 for s in self.specs])
        self.eol_id = np.array([1 if s.dialect.crlf else 0 for s in self.specs])
        base = FIRST_DAY - timedelta(days=_DATE_OFFSET)
        all_days = [base + timedelta(days=i) for i in range(nd)]
        self.dom = np.array([d.day for d in all_days])
        self.year_idx = np.array([d.year - self.year0 for d in all_days])
        strings = [_render_date(f, d.day, d.month, d.year) for f in _DATE_FORMATS for d in all_days]
        self.date_empty = len(strings)
        strings.append("")
        self.date_generic = len(strings)
        strings += list(_INVALID_DATES_GENERIC)
        self.date_invalid = len(strings)  # [fmt][year][5 impossible day/month pairs]
        for f in _DATE_FORMATS:
            for y in range(self.n_years):
                strings += [_render_date(f, d, m, self.year0 + y) for d, m in _INVALID_DAY_MONTH]
        self.date_table = pa.array(strings)
        self.frac = _frac_table()
        self.sep_decimal = pa.array([".", ","])
        self.sep_field = pa.array([",", ";"])
        self.minus = pa.array(["", "-"])
        # Discounts -0.5 .. 2.0 in tenths, per decimal separator.
        disc = []
        for sep in (".", ","):
            for v in range(-5, 21):
                sign = "-" if v < 0 else ""
                a = abs(v)
                disc.append(f"{sign}{a // 10}" if a % 10 == 0 else f"{sign}{a // 10}{sep}{a % 10}")
        self.disc_table = pa.array(disc)
        self.num_tokens = pa.array(["", *[_quote(t, d) for d in (",", ";") for t in _INVALID_NUMBERS]])
        self.empty_token = pa.array([""])
        self.ship_mode = pa.array(list(_SHIP_MODES))
        self.priority_eol = pa.array([p + e for e in ("\n", "\r\n") for p in _PRIORITIES])
        self.headers = []
        for s in self.specs:
            text = s.dialect.delimiter.join(_FIELD_ORDER) + s.dialect.line_end
            self.headers.append(("\ufeff" if s.dialect.bom else "").encode() + text.encode())

    # ---- generation -----------------------------------------------------------------

    def run(self, progress: Callable[[int], None] | None) -> GenerationSummary:
        self._check_no_stale_files()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for k in self.keys:
            (self.out_dir / k).mkdir(exist_ok=True)
        self.next_row_id = 1
        self.next_order = 0
        self.history: deque[dict[str, np.ndarray]] = deque(maxlen=POOL_DAYS)
        self.n_valid = self.n_dup = self.n_corr = self.n_bad = self.n_two = 0
        self.sales_sum = 0
        self.n_outliers = 0
        self.defect_counts = np.zeros(len(_DEFECTS), dtype=np.int64)
        for t in range(self.days):
            written = self._day(t)
            if progress is not None:
                progress(written)
        summary = GenerationSummary(
            files=self.R * self.days,
            rows_written=int(self.counts.sum()),
            valid_unique_lines=self.n_valid,
            exact_duplicates=self.n_dup,
            corrections=self.n_corr,
            defective_rows=self.n_bad,
            defects_by_reason={c: int(n) for c, n in zip(_DEFECT_CODES, self.defect_counts) if n},
            expected_silver_sales=format(Decimal(self.sales_sum).scaleb(-4), "f"),
            outliers=self.n_outliers,
            regions=list(self.keys),
            seed=self.seed,
            first_date=FIRST_DAY.isoformat(),
            last_date=(FIRST_DAY + timedelta(days=self.days - 1)).isoformat(),
            error_rate=self.error_rate,
            two_defect_rows=self.n_two,
            rows_by_region={k: int(self.counts[r].sum()) for r, k in enumerate(self.keys)},
            dialects={
                k: {
                    "delimiter": s.dialect.delimiter,
                    "decimal": s.dialect.decimal,
                    "date_format": s.dialect.date_format,
                    "bom": s.dialect.bom,
                    "line_end": "crlf" if s.dialect.crlf else "lf",
                    "encoding": "utf-8",
                }
                for k, s in zip(self.keys, self.specs)
            },
        )
        (self.out_dir / SUMMARY_FILE).write_text(summary.to_json() + "\n", encoding="utf-8")
        return summary

    def _check_no_stale_files(self) -> None:
        """Exports this run would not overwrite would make the summary wrong for whoever
        ingests the whole folder. In a folder this generator wrote before (it holds a
        generation summary) they are removed; anywhere else they are refused."""
        if not self.out_dir.is_dir():
            return
        mine = {f"{k}_{(FIRST_DAY + timedelta(days=t)).isoformat()}.csv" for k in self.keys for t in range(self.days)}
        stale = []
        for key in REGIONS:
            folder = self.out_dir / key
            if folder.is_dir():
                pattern = re.compile(re.escape(key) + r"_\d{4}-\d{2}-\d{2}\.csv")
                stale += [p for p in sorted(folder.glob("*.csv")) if p.name not in mine and pattern.fullmatch(p.name)]
                other = sorted(p.name for p in folder.glob("*.csv") if not pattern.fullmatch(p.name))
                if other:
                    raise UserError(
                        f"{folder} holds CSV files this generator did not write (e.g. {other[0]}); use an empty folder"
                    )
        if not stale:
            return
        if not (self.out_dir / SUMMARY_FILE).is_file():
            raise UserError(
                f"{stale[0].parent} already holds {len(stale)} export file(s) of another run (e.g. {stale[0].name}); "
                "generate into an empty folder"
            )
        for path in stale:
            path.unlink()

    def _day(self, t: int) -> int:
        rng = self.rng
        R = self.R
        n = self.counts[:, t]
        today = _DATE_OFFSET + t

        # 1. Re-sent lines (exact repeats, corrections) from the pool of earlier files.
        pool = {c: np.concatenate([h[c] for h in self.history]) for c in (*_COLS, "used")} if self.history else None
        if pool is not None:
            avail = np.bincount(pool["region"][~pool["used"]], minlength=R)
        else:
            avail = np.zeros(R, dtype=np.int64)
        n_dup = np.minimum(rng.binomial(n, P_DUPLICATE), avail)
        n_corr = np.minimum(rng.binomial(n, P_CORRECTION), avail - n_dup)
        n_dup = np.minimum(n_dup, n)
        n_corr = np.minimum(n_corr, n - n_dup)
        fresh_n = n - n_dup - n_corr
        dup_idx, corr_idx = [], []
        if pool is not None and (n_dup.sum() + n_corr.sum()) > 0:
            for r in range(R):
                k = int(n_dup[r] + n_corr[r])
                if not k:
                    continue
                cand = np.flatnonzero((pool["region"] == r) & ~pool["used"])
                pick = rng.choice(cand, size=k, replace=False)
                dup_idx.append(pick[: n_dup[r]])
                corr_idx.append(pick[n_dup[r] :])
            used = pool["used"]
            for arr in (*dup_idx, *corr_idx):
                used[arr] = True
            pos = 0
            for h in self.history:  # write the marks back
                h["used"] = used[pos : pos + len(h["used"])]
                pos += len(h["used"])
        dup_idx_a = np.concatenate(dup_idx) if dup_idx else np.zeros(0, dtype=np.int64)
        corr_idx_a = np.concatenate(corr_idx) if corr_idx else np.zeros(0, dtype=np.int64)
        resent = self._resent(pool, dup_idx_a, corr_idx_a)

        # 2. Fresh lines: orders of 1-6 lines, per region.
        fresh, line_order = self._fresh(fresh_n, today)
        L = len(fresh["row_id"])

        # 3. Defects on some fresh lines.
        n_bad = np.minimum(rng.binomial(n, self.error_rate), fresh_n) if self.error_rate > 0 else np.zeros(R, np.int64)
        starts = np.concatenate([[0], np.cumsum(fresh_n)[:-1]])
        bad_pos = [
            rng.choice(int(fresh_n[r]), size=int(n_bad[r]), replace=False) + starts[r] for r in range(R) if n_bad[r]
        ]
        bad = np.sort(np.concatenate(bad_pos)) if bad_pos else np.zeros(0, dtype=np.int64)
        valid = np.ones(L, dtype=bool)
        valid[bad] = False

        # 4. Every file with a valid line gets a date whose day of month is above 12.
        self._ensure_unambiguous(fresh, line_order, valid, resent)

        overrides = self._apply_defects(fresh, bad)

        # 5. Book-keeping (exact, in ten-thousandths).
        fs, fv = fresh["sales"], valid
        self.n_valid += int(fv.sum())
        self.n_bad += len(bad)
        self.sales_sum += int(fs[fv].sum())
        self.n_outliers += int((fs[fv] > OUTLIER_THRESHOLD * 10_000).sum())
        if pool is not None and len(corr_idx_a):
            old = pool["sales"][corr_idx_a]
            new = resent["sales"][len(dup_idx_a) :]
            self.sales_sum += int(new.sum() - old.sum())
            self.n_outliers += int((new > OUTLIER_THRESHOLD * 10_000).sum() - (old > OUTLIER_THRESHOLD * 10_000).sum())
        self.n_dup += len(dup_idx_a)
        self.n_corr += len(corr_idx_a)

        # 6. The pool for later days: this day's valid fresh lines.
        keep = {c: fresh[c][valid] for c in _COLS}
        keep["used"] = np.zeros(int(valid.sum()), dtype=bool)
        self.history.append(keep)

        # 7. Order the rows of each file: fresh lines by Row ID, re-sent ones anywhere.
        lines = {c: np.concatenate([fresh[c], resent[c]]) for c in _COLS}
        m = len(lines["row_id"])
        ov = {k: np.concatenate([v, np.full(m - L, -1, dtype=np.int64)]) for k, v in overrides.items()}
        fresh_rank = np.arange(L) - starts[fresh["region"]] if L else np.zeros(0)
        resent_rank = rng.random(m - L) * fresh_n[resent["region"]] - 0.5 if m > L else np.zeros(0)
        order = np.lexsort((np.concatenate([fresh_rank, resent_rank]), lines["region"]))
        lines = {c: v[order] for c, v in lines.items()}
        ov = {k: v[order] for k, v in ov.items()}

        self._write(t, lines, ov, n)
        return int(n.sum())

    def _fresh(self, fresh_n: np.ndarray, today: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        rng = self.rng
        R = self.R
        F = int(fresh_n.sum())
        sizes_all = rng.choice(6, size=max(F, 1), p=_LINES_P) + 1
        sizes, o_region = [], []
        off = 0
        for r in range(R):
            f = int(fresh_n[r])
            if not f:
                continue
            seg = sizes_all[off : off + f]
            off += f
            cs = np.cumsum(seg)
            k = int(np.searchsorted(cs, f))
            s = seg[: k + 1].copy()
            s[-1] -= int(cs[k]) - f
            sizes.append(s)
            o_region.append(np.full(k + 1, r, dtype=np.int64))
        if not sizes:
            empty = {c: np.zeros(0, dtype=np.int64) for c in _COLS}
            empty["postal"] = np.zeros(0, dtype=bool)
            return empty, np.zeros(0, dtype=np.int64)
        sizes_a = np.concatenate(sizes)
        region = np.concatenate(o_region)
        n_orders = len(region)
        # Orders.
        cust = _pick_weighted(rng, self.cust_cum, self.cust_lo[region], self.cust_hi[region])
        city = self.cust_city[cust]
        move = rng.random(n_orders) < 0.10
        if move.any():
            city[move] = _pick_weighted(rng, self.city_cum, self.city_lo[region[move]], self.city_hi[region[move]])
        late = rng.random(n_orders) < P_LATE
        odate = np.where(late, today - rng.integers(1, 61, size=n_orders), today)
        prio = rng.choice(4, size=n_orders, p=_PRIORITY_P)
        cum = np.cumsum(_MODE_GIVEN_PRIORITY, axis=1)
        smode = np.minimum((rng.random(n_orders)[:, None] > cum[prio]).sum(axis=1), 3)
        lo = np.array([a for a, _ in _SHIP_DAYS])[smode]
        hi = np.array([b for _, b in _SHIP_DAYS])[smode]
        ship_days = lo + np.floor(rng.random(n_orders) * (hi - lo + 1)).astype(np.int64)
        sdate = np.where(rng.random(n_orders) < P_UNSHIPPED, -1, odate + ship_days)
        postal = self.city_has_postal[city] & (rng.random(n_orders) < self.postal_share[region])
        order_no = np.arange(self.next_order, self.next_order + n_orders, dtype=np.int64)
        self.next_order += n_orders
        order_no = 1_000_000 + (order_no * _ORDER_NO_MULT + 1_234_567) % _ORDER_NO_SPAN
        # Lines.
        line_order = np.repeat(np.arange(n_orders), sizes_a)
        L = len(line_order)
        prod = np.searchsorted(self.prod_cum, rng.random(L) * self.prod_cum[-1], side="right")
        prod = np.minimum(prod, self.n_products - 1)
        qty = rng.choice(14, size=L, p=_p(_QTY_P)) + 1
        d10 = rng.choice(8, size=L, p=_p(_DISCOUNT_P))
        outlier = rng.random(L) < P_OUTLIER
        if outlier.any():
            k = int(outlier.sum())
            prod[outlier] = self.premium[rng.integers(len(self.premium), size=k)]
            need = np.ceil((OUTLIER_THRESHOLD * 10_000 + 1) / self.prod_price[prod[outlier]]).astype(np.int64)
            qty[outlier] = np.clip(np.maximum(qty[outlier], need), 1, 14)
        price = self.prod_price[prod]
        sales = price * qty
        margin = self.prod_margin[prod] + rng.normal(0.0, 0.08, L) - 1.1 * d10 / 10.0
        profit = np.rint(sales * (10 - d10) / 10.0 * margin).astype(np.int64)
        rate = 0.02 + 0.10 * rng.random(L)
        shipc = np.rint(sales / 100.0 * rate * _SHIP_COST_FACTOR[smode[line_order]]).astype(np.int64) * 100
        row_id = np.arange(self.next_row_id, self.next_row_id + L, dtype=np.int64)
        self.next_row_id += L
        fresh = {
            "region": region[line_order],
            "row_id": row_id,
            "order_no": order_no[line_order],
            "city": city[line_order],
            "odate": odate[line_order],
            "sdate": sdate[line_order],
            "smode": smode[line_order],
            "prio": prio[line_order],
            "cust": cust[line_order],
            "postal": postal[line_order],
            "prod": prod,
            "qty": qty,
            "d10": d10,
            "price": price,
            "sales": sales,
            "profit": profit,
            "shipc": shipc,
        }
        return fresh, line_order

    def _resent(
        self, pool: dict[str, np.ndarray] | None, dup_idx: np.ndarray, corr_idx: np.ndarray
    ) -> dict[str, np.ndarray]:
        if pool is None or (len(dup_idx) + len(corr_idx)) == 0:
            out = {c: np.zeros(0, dtype=np.int64) for c in _COLS}
            out["postal"] = np.zeros(0, dtype=bool)
            return out
        rng = self.rng
        dup = {c: pool[c][dup_idx] for c in _COLS}
        cor = {c: pool[c][corr_idx].copy() for c in _COLS}
        k = len(corr_idx)
        kind = rng.choice(4, size=k, p=(0.40, 0.20, 0.15, 0.25))
        # Quantity: sales, profit and shipping cost follow.
        m = kind == 0
        if m.any():
            q0 = cor["qty"][m]
            q1 = (q0 - 1 + rng.integers(1, 14, size=int(m.sum()))) % 14 + 1
            cor["qty"][m] = q1
            cor["sales"][m] = cor["price"][m] * q1
            cor["profit"][m] = np.rint(cor["profit"][m] * q1 / q0).astype(np.int64)
            cor["shipc"][m] = np.rint(cor["shipc"][m] / 100.0 * q1 / q0).astype(np.int64) * 100
        # Discount: profit moves by the discount amount.
        m = kind == 1
        if m.any():
            d0 = cor["d10"][m]
            d1 = (d0 + rng.integers(1, 8, size=int(m.sum()))) % 8
            cor["d10"][m] = d1
            cor["profit"][m] -= np.rint(cor["sales"][m] * (d1 - d0) / 10.0).astype(np.int64)
        # Unit price: sales and profit follow.
        m = kind == 2
        if m.any():
            p0 = cor["price"][m]
            p1 = np.maximum(
                np.rint(p0 * rng.uniform(0.85, 1.15, size=int(m.sum())) / 100.0).astype(np.int64) * 100, 100
            )
            p1 = np.where(p1 == p0, p0 + 100, p1)
            s0 = cor["sales"][m]
            s1 = p1 * cor["qty"][m]
            cor["price"][m] = p1
            cor["sales"][m] = s1
            cor["profit"][m] += np.rint((s1 - s0) * (10 - cor["d10"][m]) / 10.0).astype(np.int64)
        # Ship date: shipped now, or shipped later than first reported.
        m = kind == 3
        if m.any():
            s = cor["sdate"][m]
            o = cor["odate"][m]
            cor["sdate"][m] = np.where(
                s < 0, o + rng.integers(0, 8, size=int(m.sum())), s + rng.integers(1, 4, size=int(m.sum()))
            )
        return {c: np.concatenate([dup[c], cor[c]]) for c in _COLS}

    def _ensure_unambiguous(
        self, fresh: dict[str, np.ndarray], line_order: np.ndarray, valid: np.ndarray, resent: dict[str, np.ndarray]
    ) -> None:
        """Move one order per file back to the last day of the previous month when no valid
        line of the file has a date with a day of month above 12."""
        R = self.R

        def big(d: dict[str, np.ndarray], mask: np.ndarray | None = None) -> np.ndarray:
            o, s, reg = d["odate"], d["sdate"], d["region"]
            if mask is not None:
                o, s, reg = o[mask], s[mask], reg[mask]
            flag = (self.dom[o] > 12) | ((s >= 0) & (self.dom[np.maximum(s, 0)] > 12))
            return np.bincount(reg, weights=flag, minlength=R)

        if not len(fresh["odate"]):
            return
        has = big(fresh, valid) + (big(resent) if len(resent["odate"]) else 0)
        n_valid = np.bincount(fresh["region"][valid], minlength=R)
        need = np.flatnonzero((has == 0) & (n_valid > 0))
        for r in need:
            first = int(np.flatnonzero(valid & (fresh["region"] == r))[0])
            rows = line_order == line_order[first]
            shift = int(self.dom[fresh["odate"][first]])
            fresh["odate"][rows] -= shift
            fresh["sdate"][rows] = np.where(fresh["sdate"][rows] >= 0, fresh["sdate"][rows] - shift, -1)

    def _apply_defects(self, fresh: dict[str, np.ndarray], bad: np.ndarray) -> dict[str, np.ndarray]:
        """Corrupt the ``bad`` fresh lines; returns per-column override indices (-1 none)."""
        rng = self.rng
        L = len(fresh["row_id"])
        ov: dict[str, np.ndarray] = {}
        if not len(bad):
            return ov
        k1 = rng.choice(len(_DEFECTS), size=len(bad), p=_DEFECT_WEIGHTS)
        k2 = rng.choice(len(_DEFECTS), size=len(bad), p=_DEFECT_WEIGHTS)
        two = (rng.random(len(bad)) < P_TWO_DEFECTS) & _DEFECT_COMPATIBLE[k1, k2]
        rows = np.concatenate([bad, bad[two]])
        kinds = np.concatenate([k1, k2[two]])
        self.n_two += int(two.sum())
        self.defect_counts += np.bincount(kinds, minlength=len(_DEFECTS))

        def slot(name: str) -> np.ndarray:
            if name not in ov:
                ov[name] = np.full(L, -1, dtype=np.int64)
            return ov[name]

        region = fresh["region"]
        for kind in np.unique(kinds):
            code = _DEFECT_CODES[kind]
            idx = rows[kinds == kind]
            k = len(idx)
            reason, _, fld = code.partition(":")
            if reason == "missing_required":
                if fld == "order_date":
                    slot(fld)[idx] = self.date_empty
                else:
                    slot(fld)[idx] = 0  # the empty token of every token table
            elif reason == "invalid_date":
                base = (
                    fresh["odate"][idx] if fld == "order_date" else np.maximum(fresh["sdate"][idx], fresh["odate"][idx])
                )
                specific = (
                    self.date_invalid
                    + (self.fmt_id[region[idx]] * self.n_years + self.year_idx[base]) * len(_INVALID_DAY_MONTH)
                    + rng.integers(len(_INVALID_DAY_MONTH), size=k)
                )
                generic = self.date_generic + rng.integers(len(_INVALID_DATES_GENERIC), size=k)
                slot(fld)[idx] = np.where(rng.random(k) < 0.75, specific, generic)
            elif reason == "invalid_number":
                slot(fld)[idx] = (
                    1 + self.delim_id[region[idx]] * len(_INVALID_NUMBERS) + rng.integers(len(_INVALID_NUMBERS), size=k)
                )
            elif reason == "non_positive_quantity":
                fresh["qty"][idx] = rng.choice(np.array([0, -1, -2, -3, -5]), size=k)
            elif reason == "non_positive_sales":
                fresh["sales"][idx] = np.where(rng.random(k) < 0.3, 0, -fresh["sales"][idx])
            elif reason == "discount_out_of_range":
                fresh["d10"][idx] = rng.choice(_BAD_DISCOUNT, size=k)
            elif reason == "ship_before_order":
                fresh["sdate"][idx] = fresh["odate"][idx] - rng.integers(1, 11, size=k)
            else:  # pragma: no cover - every code is handled above
                raise AssertionError(code)
        return ov

    # ---- formatting and writing -----------------------------------------------------------

    def _money(self, v: np.ndarray, sep: pa.Array) -> pa.Array:
        a = np.abs(v)
        s = pc.binary_join_element_wise(
            pa.array(a // 10_000).cast(pa.string()), self.frac.take(pa.array(a % 10_000)), sep
        )
        neg = v < 0
        if neg.any():
            s = pc.binary_join_element_wise(self.minus.take(pa.array(neg.astype(np.int8))), s, "")
        return s

    @staticmethod
    def _override(s: pa.Array, ov: np.ndarray | None, table: pa.Array) -> pa.Array:
        if ov is None:
            return s
        mask = ov >= 0
        if not mask.any():
            return s
        return pc.if_else(pa.array(mask), table.take(pa.array(np.maximum(ov, 0))), s)

    def _format(self, lines: dict[str, np.ndarray], ov: dict[str, np.ndarray]) -> pa.Array:
        reg = lines["region"]
        nd = self.n_dates
        fmt = self.fmt_id[reg]
        delim = self.delim_id[reg]
        dec_sep = self.sep_decimal.take(pa.array(self.dec_id[reg]))
        odate, sdate = lines["odate"], lines["sdate"]
        cust, prod, city = lines["cust"], lines["prod"], lines["city"]
        cust_v = cust + self.n_customers * (odate >= self.cust_change[cust])
        prod_v = prod + self.n_products * (odate >= self.prod_change[prod])
        country = self.city_country[city]
        dates = self.date_table

        o_idx = fmt * nd + odate
        if "order_date" in ov:
            o_idx = np.where(ov["order_date"] >= 0, ov["order_date"], o_idx)
        s_idx = np.where(sdate >= 0, fmt * nd + np.maximum(sdate, 0), self.date_empty)
        if "ship_date" in ov:
            s_idx = np.where(ov["ship_date"] >= 0, ov["ship_date"], s_idx)
        order_id = pc.binary_join_element_wise(
            self.order_prefix.take(pa.array(country * self.n_years + self.year_idx[odate])),
            pa.array(lines["order_no"]).cast(pa.string()),
            "",
        )
        names = self.prod_name_by_delim
        pname = (
            pc.if_else(pa.array(delim == 1), names[1].take(pa.array(prod_v)), names[0].take(pa.array(prod_v)))
            if delim.any()
            else names[0].take(pa.array(prod_v))
        )
        tok = self.num_tokens
        cols = [
            self._override(pa.array(lines["row_id"]).cast(pa.string()), ov.get("line_id"), self.empty_token),
            self._override(order_id, ov.get("order_id"), self.empty_token),
            dates.take(pa.array(o_idx)),
            dates.take(pa.array(s_idx)),
            self.ship_mode.take(pa.array(lines["smode"])),
            self._override(self.cust_id.take(pa.array(cust)), ov.get("customer_id"), self.empty_token),
            self.cust_name.take(pa.array(cust_v)),
            self.cust_segment.take(pa.array(cust_v)),
            self.city_name.take(pa.array(city)),
            self.city_state.take(pa.array(city)),
            self.country_name.take(pa.array(country)),
            self.city_postal.take(pa.array(np.where(lines["postal"], city, self.n_cities))),
            self.country_market.take(pa.array(country)),
            self.region_label.take(pa.array(reg)),
            self._override(self.prod_id.take(pa.array(prod)), ov.get("product_id"), self.empty_token),
            self.prod_category.take(pa.array(prod)),
            self.prod_sub.take(pa.array(prod_v)),
            pname,
            self._override(self._money(lines["sales"], dec_sep), ov.get("sales"), tok),
            self._override(pa.array(lines["qty"]).cast(pa.string()), ov.get("quantity"), tok),
            self._override(
                self.disc_table.take(pa.array(lines["d10"] + 5 + 26 * self.dec_id[reg])), ov.get("discount"), tok
            ),
            self._override(self._money(lines["profit"], dec_sep), ov.get("profit"), tok),
            self._override(self._money(lines["shipc"], dec_sep), ov.get("shipping_cost"), tok),
            self.priority_eol.take(pa.array(lines["prio"] + len(_PRIORITIES) * self.eol_id[reg])),
        ]
        return pc.binary_join_element_wise(*cols, self.sep_field.take(pa.array(delim)))

    def _write(self, t: int, lines: dict[str, np.ndarray], ov: dict[str, np.ndarray], n: np.ndarray) -> None:
        day = (FIRST_DAY + timedelta(days=t)).isoformat()
        if len(lines["row_id"]):
            text = self._format(lines, ov)
            offsets = np.frombuffer(text.buffers()[1], dtype=np.int32, count=len(text) + 1, offset=text.offset * 4)
            data = memoryview(text.buffers()[2])
        bounds = np.concatenate([[0], np.cumsum(n)])
        for r, key in enumerate(self.keys):
            with open(self.out_dir / key / f"{key}_{day}.csv", "wb") as f:
                f.write(self.headers[r])
                if n[r]:
                    f.write(data[offsets[bounds[r]] : offsets[bounds[r + 1]]])
