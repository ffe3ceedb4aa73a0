"""The data contract (docs/contract.md) in code: canonical CSV fields, aliases,
the silver schema and the reason codes. Everything else imports names from here.
"""

from __future__ import annotations

import functools
import re

import pyarrow as pa

# CONTRACT §2: the 24 canonical CSV fields, in export order, with their silver names.
CSV_FIELDS: dict[str, str] = {
    "Row ID": "line_id",
    "Order ID": "order_id",
    "Order Date": "order_date",
    "Ship Date": "ship_date",
    "Ship Mode": "ship_mode",
    "Customer ID": "customer_id",
    "Customer Name": "customer_name",
    "Segment": "segment",
    "City": "city",
    "State": "state",
    "Country": "country",
    "Postal Code": "postal_code",
    "Market": "market",
    "Region": "region",
    "Product ID": "product_id",
    "Category": "category",
    "Sub-Category": "sub_category",
    "Product Name": "product_name",
    "Sales": "sales",
    "Quantity": "quantity",
    "Discount": "discount",
    "Profit": "profit",
    "Shipping Cost": "shipping_cost",
    "Order Priority": "order_priority",
}
# Fields an export may lack entirely; they become null.
OPTIONAL_CSV_COLUMNS = frozenset({"market", "shipping_cost", "order_priority"})
CSV_ALIASES: dict[str, str] = {"country/region": "country", "state/province": "state"}

REQUIRED_FIELDS = ("order_id", "line_id", "order_date", "customer_id", "product_id", "quantity", "sales")
DATE_FIELDS = ("order_date", "ship_date")
NUMBER_FIELDS = ("sales", "quantity", "discount", "profit", "shipping_cost")

# CONTRACT §4 reason codes (plus ``malformed_row`` for records the CSV reader cannot
# split into fields: unterminated quotes, too many fields).
REASON_MISSING = "missing_required:{field}"
REASON_INVALID_DATE = "invalid_date:{field}"
REASON_INVALID_NUMBER = "invalid_number:{field}"
REASON_NON_POSITIVE_QUANTITY = "non_positive_quantity"
REASON_NON_POSITIVE_SALES = "non_positive_sales"
REASON_DISCOUNT_RANGE = "discount_out_of_range"
REASON_SHIP_BEFORE_ORDER = "ship_before_order"
# Beyond CONTRACT §4 (see silver.bounds): a quantity above quality.max_quantity, a region
# or category too long for a warehouse key, text with a NUL character.
REASON_QUANTITY_RANGE = "quantity_out_of_range"
REASON_TEXT_TOO_LONG = "text_too_long:{field}"
REASON_INVALID_TEXT = "invalid_text:{field}"
REASON_MALFORMED_ROW = "malformed_row"

_NORMALISE = re.compile(r"[\s_\-]+")


def normalise_header(name: str) -> str:
    """Case-, space-, dash- and underscore-insensitive form of a header name."""
    return _NORMALISE.sub("", name.strip().lstrip("\ufeff").lower())


_CANONICAL_BY_KEY = {normalise_header(k): v for k, v in CSV_FIELDS.items()}
_CANONICAL_BY_KEY.update({normalise_header(k): v for k, v in CSV_ALIASES.items()})


@functools.lru_cache(maxsize=4096)
def canonical_column(header: str) -> str | None:
    """The silver name of a CSV header, or None for an unknown extra column (cached: a
    folder of daily exports repeats one header thousands of times)."""
    return _CANONICAL_BY_KEY.get(normalise_header(header))


MONEY = pa.decimal128(18, 4)
RATE = pa.decimal128(9, 4)
#: A moment (microseconds, UTC): every timestamp the lake stores.
UTC_TIME = pa.timestamp("us", tz="UTC")


def text_fields(*names: str) -> list[tuple[str, pa.DataType]]:
    """Text columns in the order given, for a schema to list its text columns on one
    line per thing they describe (the customer, the product) rather than one per column."""
    return [(name, pa.string()) for name in names]


#: Where a row came from, the same in silver and in quarantine: its bronze object and
#: position in it, the landing sequence that orders its versions, the batch that parsed
#: it and when its object landed.
LINEAGE_FIELDS = [
    *text_fields("bronze_uri", "source_position"),
    ("landed_seq", pa.int64()),
    ("batch_id", pa.string()),
    ("ingested_at", UTC_TIME),
]

# CONTRACT §3: silver.sales_lines. ``order_month`` is the partition column; ``row_hash``
# identifies a version of a line's business content (exact repeats share it);
# ``landed_seq`` orders versions so that the latest landed wins whatever the order of
# processing. ``ingested_at`` is when the bronze object landed; ``batch_id`` names the
# range of landed objects parsed together.
SALES_LINES_SCHEMA = pa.schema(
    [
        *text_fields("line_key", "source_system", "order_id", "line_id"),
        ("order_date", pa.date32()),
        ("order_ts", UTC_TIME),
        ("ship_date", pa.date32()),
        *text_fields("ship_mode", "order_priority"),
        *text_fields("customer_id", "customer_name", "segment"),
        *text_fields("city", "state", "country", "postal_code", "market", "region"),
        *text_fields("store_id", "product_id", "product_name", "category", "sub_category"),
        ("quantity", pa.int64()),
        ("unit_price", MONEY),
        ("sales", MONEY),
        ("discount", RATE),
        ("profit", MONEY),
        ("shipping_cost", MONEY),
        ("currency", pa.string()),
        ("tax_rate", RATE),
        ("tax_amount", MONEY),
        ("is_suspected_fraud", pa.bool_()),
        ("fraud_reasons", pa.list_(pa.string())),
        ("is_outlier", pa.bool_()),
        ("dq_score", pa.int32()),
        ("row_hash", pa.string()),
        *LINEAGE_FIELDS,
        ("order_month", pa.string()),
        # point of sale only (null for other sources): the evidence of the velocity rule
        *text_fields("payment_method", "card_fingerprint"),
    ]
)

# silver.quarantine: raw values as text (and raw bytes for messages), every reason, lineage. Lineage fields are
# derived from the bronze object (not from the run), so a rerun after a crash writes
# exactly the rows an uninterrupted run would have written.
QUARANTINE_SCHEMA = pa.schema(
    [
        *text_fields("quarantine_key", "source_system"),
        ("reasons", pa.list_(pa.string())),
        ("raw", pa.map_(pa.string(), pa.string())),
        *text_fields("raw_line", "order_id", "line_id"),
        *LINEAGE_FIELDS,
        # the message exactly as received (Kafka): it need not be text
        ("raw_bytes", pa.binary()),
    ]
)
