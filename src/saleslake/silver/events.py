"""Point-of-sale events (CONTRACT §6) to canonical silver lines, in SQL over one batch.

Input: temp table ``records`` (topic, partition, offset, key, timestamp, value) with the
batch's Kafka records, and temp tables ``ref_stores`` / ``ref_products`` (reference
states with their ``valid_until``, see :mod:`saleslake.pipeline.stream`). :func:`prepare_batch` builds

- ``events``: one row per message, parsed JSON and its message-level ``reasons``
  (``oversized_message``, ``invalid_json``, ``schema_violation:<field>``, and
  ``invalid_date:event_time`` for a UTC date outside the plausible window of
  :mod:`saleslake.silver.bounds`): such a message is quarantined whole, with its raw bytes;
- ``event_lines``: one row per line of a well-formed message, typed, with its line-level
  ``reasons`` (CONTRACT §4: ``non_positive_quantity``, ``non_positive_sales``,
  ``discount_out_of_range``; ``quantity_out_of_range`` and ``invalid_number:sales`` for a
  quantity × unit price beyond DECIMAL(18,4)): such a line is quarantined, its siblings
  are valid;
- ``quarantine_rows``: both kinds in the quarantine schema;
- ``valid_all``: the valid lines in the silver schema, enriched (tax, the line fraud
  rules, dq), plus the ``fi``/``pos`` ordering columns
  :func:`saleslake.silver.dedup.classify` expects.

Every value of a line is a function of its message alone, so a batch gives the same lines
whatever came before it. The fraud rules that need history (velocity, quantity above the
product's norm) are decided in gold, over all of silver (CONTRACT §7).
"""

from __future__ import annotations

import json

import duckdb

from saleslake.config import Settings
from saleslake.silver.bounds import bad_text, case_reasons, date_checks, quantity_check
from saleslake.silver.dedup import row_hash_sql
from saleslake.silver.enrich import enrichment_columns, tax_rate_sql

SCHEMA_NAME = "pos.sale.v1"
BRONZE_URI = "bronze/events/pos"
WALK_IN = "WALK-IN"
PAYMENT_METHODS = ("card", "cash", "mobile", "gift_card")
#: A basket longer than this is not a till receipt.
MAX_LINES = 500

_EVENT_FIELDS = (
    "schema",
    "event_id",
    "transaction_id",
    "event_time",
    "store_id",
    "terminal_id",
    "customer_id",
    "currency",
    "payment_method",
    "card_fingerprint",
)
_LINE_FIELDS = ("line_no", "product_id", "quantity", "unit_price", "discount")
# One parse per message: every field is kept as its JSON text (so the checks below can
# still tell 2 from "2"), the lines as a list of such structs. A JSON null and an absent
# key both come out as NULL.
_SHAPE = json.dumps({**{f: "JSON" for f in _EVENT_FIELDS}, "lines": "JSON"})
_LINE_SHAPE = json.dumps([{f: "JSON" for f in _LINE_FIELDS}])


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _string(v: str) -> str:
    """The string a JSON-text leaf holds (NULL for any other JSON type)."""
    # the JSON text of a string starts with a quote: cheaper than asking json_type
    return f"CASE WHEN starts_with({v}, '\"') THEN {v} ->> '$' END"


def _string_check(v: str, name: str, nullable: bool = False) -> str:
    """Reason when the leaf is not a non-empty string (absent or null allowed if nullable),
    or holds a character no warehouse text or line key can (see bounds.bad_text)."""
    text = f"({v} ->> '$')"
    bad = f"NOT starts_with({v}, '\"') OR {v} = '\"\"' OR {bad_text(text, name)}"
    if not nullable:
        bad = f"{v} IS NULL OR {bad}"
    return f"CASE WHEN {bad} THEN 'schema_violation:{name}' END"


def _event_date(v: str) -> str:
    """The UTC date of an event time (the order date of its lines)."""
    return f"CAST(timezone('UTC', TRY_CAST({_string(v)} AS TIMESTAMPTZ)) AS DATE)"


def _message_checks(settings: Settings) -> list[str]:
    currencies = ", ".join(_text(c) for c in settings.stream.currencies)
    methods = ", ".join(map(_text, PAYMENT_METHODS))
    return [
        f"CASE WHEN {_string('e.schema')} IS DISTINCT FROM '{SCHEMA_NAME}' THEN 'schema_violation:schema' END",
        _string_check("e.event_id", "event_id"),
        _string_check("e.transaction_id", "transaction_id"),
        # ISO 8601 with an explicit offset: a time without one is ambiguous
        f"CASE WHEN {_string('e.event_time')} IS NULL "
        rf"OR NOT regexp_matches({_string('e.event_time')}, '^\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)$') "
        f"OR TRY_CAST({_string('e.event_time')} AS TIMESTAMPTZ) IS NULL THEN 'schema_violation:event_time' END",
        # the lines' order and ship date: the event's UTC date, within the plausible window
        *case_reasons(date_checks({"event_time": _event_date("e.event_time")}, settings.quality)),
        _string_check("e.store_id", "store_id"),
        _string_check("e.terminal_id", "terminal_id"),
        _string_check("e.customer_id", "customer_id", nullable=True),
        f"CASE WHEN {_string('e.currency')} IS NULL OR {_string('e.currency')} NOT IN ({currencies}) "
        "THEN 'schema_violation:currency' END",
        f"CASE WHEN {_string('e.payment_method')} IS NULL OR {_string('e.payment_method')} NOT IN ({methods}) "
        "THEN 'schema_violation:payment_method' END",
        _string_check("e.card_fingerprint", "card_fingerprint", nullable=True),
        f"CASE WHEN json_type(e.lines) IS DISTINCT FROM 'ARRAY' OR json_array_length(e.lines) = 0 "
        f"OR json_array_length(e.lines) > {MAX_LINES} THEN 'schema_violation:lines' END",
    ]


def _integer_check(v: str, name: str) -> str:
    return (
        f"CASE WHEN {v} IS NULL OR NOT regexp_full_match({v}, '-?[0-9]+') OR TRY_CAST({v} AS BIGINT) IS NULL "
        f"THEN 'schema_violation:lines.{name}' END"
    )


def _money_check(v: str, name: str, sql_type: str) -> str:
    # money is a decimal string, never a JSON number (floats lose cents)
    return (
        f"CASE WHEN {_string(v)} IS NULL OR TRY_CAST({_string(v)} AS {sql_type}) IS NULL "
        f"THEN 'schema_violation:lines.{name}' END"
    )


def _line_checks() -> list[str]:
    return [
        _integer_check("l.line_no", "line_no"),
        _string_check("l.product_id", "lines.product_id"),
        _integer_check("l.quantity", "quantity"),
        _money_check("l.unit_price", "unit_price", "DECIMAL(18,4)"),
        _money_check("l.discount", "discount", "DECIMAL(9,4)"),
    ]


def _reasons(checks: list[str]) -> str:
    return f"list_filter([{', '.join(checks)}], lambda r: r IS NOT NULL)"


def _parse_messages(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """``events``: every record with its parsed fields (when it is a JSON object) and its
    message-level reasons; ``raw_lines``: the lines of messages that passed, with theirs
    (:func:`_check_lines`)."""
    limit = settings.stream.max_message_bytes
    # One statement: a separate decoded table costs a copy of every message. The raw bytes
    # and text are not kept here; the quarantine takes them from ``records`` for the few
    # bad messages.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE events AS
        SELECT topic, "partition", "offset", "timestamp", e,
               CASE WHEN size > {limit} THEN ['oversized_message']
                    WHEN e IS NULL THEN ['invalid_json']
                    ELSE {_reasons(_message_checks(settings))} END AS reasons
        FROM (
            SELECT *, CASE WHEN coalesce(json_valid(text), false) AND json_type(text) = 'OBJECT'
                           THEN json_transform(text, '{_SHAPE}') END AS e
            FROM (
                SELECT *, octet_length(value) AS size,
                       CASE WHEN octet_length(value) <= {limit} THEN try(decode(value)) END AS text
                FROM records
            )
        )
        """
    )
    _check_lines(con)


def _check_lines(con: duckdb.DuckDBPyConnection) -> None:
    """``raw_lines``: the lines of the messages that passed so far, with their reasons; the
    reasons of a message with a malformed line become its own (in ``events``)."""
    # Lines are checked one by one; a malformed line makes the whole message malformed.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE raw_lines AS
        SELECT "partition", "offset", idx, lj, l, {_reasons(_line_checks())} AS reasons
        FROM (
            SELECT *, json_transform(lj, '{_LINE_SHAPE[1:-1]}') AS l
            FROM (
                SELECT "partition", "offset", unnest(CAST(e.lines AS JSON[])) AS lj,
                       unnest(range(1, CAST(json_array_length(e.lines) AS BIGINT) + 1)) AS idx
                FROM events WHERE len(reasons) = 0
            )
        )
        """
    )
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE line_faults AS
        SELECT "partition", "offset",
               list_sort(list_distinct(flatten(list(reasons)))) AS reasons
        FROM (
            SELECT "partition", "offset", reasons FROM raw_lines WHERE len(reasons) > 0
            UNION ALL  -- the same line number twice in one basket
            SELECT "partition", "offset", ['schema_violation:lines.line_no']
            FROM raw_lines WHERE len(reasons) = 0
            GROUP BY "partition", "offset", CAST(l.line_no AS BIGINT) HAVING count(*) > 1
        )
        GROUP BY ALL
        """
    )
    con.execute(
        """
        UPDATE events e SET reasons = f.reasons FROM line_faults f
        WHERE e."partition" = f."partition" AND e."offset" = f."offset"
        """
    )


def _type_lines(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """``event_lines``: the lines of well-formed messages, typed, with line-level reasons.

    (TRY_CAST: the values were checked, but the planner may evaluate a cast before the
    filter that excludes malformed messages. ``sales`` = quantity × unit price, NULL when
    it does not fit DECIMAL(18,4): ``invalid_number:sales``.)"""
    line_checks = [
        "CASE WHEN quantity <= 0 THEN 'non_positive_quantity' END",
        "CASE WHEN unit_price <= 0 THEN 'non_positive_sales' END",
        "CASE WHEN discount < 0 OR discount > 1 THEN 'discount_out_of_range' END",
        *case_reasons([quantity_check("quantity", settings.quality)]),
        "CASE WHEN sales IS NULL AND quantity IS NOT NULL AND unit_price IS NOT NULL THEN 'invalid_number:sales' END",
    ]
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE event_lines AS
        SELECT *, {_reasons(line_checks)} AS reasons
        FROM (
            SELECT *, TRY_CAST(quantity * unit_price AS DECIMAL(18,4)) AS sales
            FROM (
            SELECT e.*, r.idx, r.lj,
                   TRY_CAST(r.l.line_no AS BIGINT) AS line_no,
                   {_string("r.l.product_id")} AS product_id,
                   TRY_CAST(r.l.quantity AS BIGINT) AS quantity,
                   TRY_CAST({_string("r.l.unit_price")} AS DECIMAL(18,4)) AS unit_price,
                   TRY_CAST({_string("r.l.discount")} AS DECIMAL(9,4)) AS discount
            FROM (
                -- the message's fields once per message, not once per line
                SELECT topic, "partition", "offset", "timestamp",
                       {_string("e.transaction_id")} AS transaction_id,
                       TRY_CAST({_string("e.event_time")} AS TIMESTAMPTZ) AS order_ts,
                       {_string("e.store_id")} AS store_id,
                       {_string("e.customer_id")} AS customer_id,
                       {_string("e.currency")} AS currency,
                       {_string("e.payment_method")} AS payment_method,
                       {_string("e.card_fingerprint")} AS card_fingerprint
                FROM events WHERE len(reasons) = 0
            ) e JOIN raw_lines r USING ("partition", "offset")
            )
        )
        """
    )


def _quarantine(con: duckdb.DuckDBPyConnection, settings: Settings, batch_id: str) -> None:
    limit = settings.stream.max_message_bytes
    position = "'kafka:' || topic || '/' || \"partition\" || '@' || \"offset\""
    key = 'md5(\'pos\' || chr(31) || topic || chr(31) || "partition" || chr(31) || "offset"'
    con.execute(
        f"""
        CREATE OR REPLACE TEMP VIEW quarantine_rows AS
        SELECT {key} || ')') AS quarantine_key, 'pos' AS source_system, reasons,
               CAST(NULL AS MAP(VARCHAR, VARCHAR)) AS raw,
               CASE WHEN octet_length(value) <= {limit} THEN left(try(decode(value)), 20000) END AS raw_line,
               {_string("e.transaction_id")} AS order_id,
               CAST(NULL AS VARCHAR) AS line_id, '{BRONZE_URI}' AS bronze_uri, {position} AS source_position,
               "offset" AS landed_seq, '{batch_id}' AS batch_id, "timestamp" AS ingested_at, value AS raw_bytes,
               "partition"
        FROM (
            SELECT e.*, (SELECT any_value(r.value) FROM records r
                         WHERE r."partition" = e."partition" AND r."offset" = e."offset") AS value
            FROM events e WHERE len(e.reasons) > 0
        )
        UNION ALL
        SELECT {key} || chr(31) || idx) AS quarantine_key, 'pos', reasons,
               MAP {{'store_id': store_id, 'event_time': strftime(order_ts, '%Y-%m-%dT%H:%M:%S.%gZ'),
                    'line_no': CAST(line_no AS VARCHAR), 'product_id': product_id,
                    'quantity': CAST(quantity AS VARCHAR), 'unit_price': CAST(unit_price AS VARCHAR),
                    'discount': CAST(discount AS VARCHAR)}},
               CAST(lj AS VARCHAR), transaction_id, CAST(line_no AS VARCHAR), '{BRONZE_URI}', {position},
               "offset", '{batch_id}', "timestamp", NULL, "partition"
        FROM event_lines WHERE len(reasons) > 0
        """
    )


def _canonical_lines(con: duckdb.DuckDBPyConnection) -> None:
    """``pos_lines``: valid lines in canonical columns, with store and product attributes
    from the reference state valid at the event."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE pos_lines AS
        SELECT md5('pos' || chr(31) || l.transaction_id || chr(31) || l.line_no) AS line_key,
               'pos' AS source_system, l.transaction_id AS order_id, CAST(l.line_no AS VARCHAR) AS line_id,
               CAST(timezone('UTC', l.order_ts) AS DATE) AS order_date, l.order_ts,
               -- a till sale leaves the shop with the customer
               CAST(timezone('UTC', l.order_ts) AS DATE) AS ship_date, 'In Store' AS ship_mode,
               CAST(NULL AS VARCHAR) AS order_priority,
               coalesce(l.customer_id, '{WALK_IN}') AS customer_id,
               CASE WHEN l.customer_id IS NULL THEN 'Walk-in customer' END AS customer_name,
               CASE WHEN l.customer_id IS NULL THEN 'Walk-in' END AS segment,
               s.city, s.state, s.country, s.postal_code, s.market, s.region, l.store_id,
               l.product_id, p.product_name, p.category, p.sub_category,
               l.quantity, l.sales, l.discount,
               CAST(NULL AS DECIMAL(18,4)) AS profit, CAST(NULL AS DECIMAL(18,4)) AS shipping_cost,
               l.currency, l.payment_method, l.card_fingerprint,
               l.topic, l."partition", l."offset", l."timestamp", l.line_no
        FROM event_lines l
        LEFT JOIN ref_stores s
               ON l.store_id = s.store_id AND l.order_ts >= s.updated_at AND l.order_ts < s.valid_until
        LEFT JOIN ref_products p
               ON l.product_id = p.product_id AND l.order_ts >= p.updated_at AND l.order_ts < p.valid_until
        WHERE len(l.reasons) = 0
        """
    )


def _valid(con: duckdb.DuckDBPyConnection, settings: Settings, batch_id: str) -> None:
    con.execute(
        f"""
        CREATE OR REPLACE TEMP VIEW valid_all AS
        SELECT * EXCLUDE (topic, "partition", "offset", "timestamp", line_no),
               len(fraud_reasons) > 0 AS is_suspected_fraud,
               {row_hash_sql()} AS row_hash,
               '{BRONZE_URI}' AS bronze_uri,
               'kafka:' || topic || '/' || "partition" || '@' || "offset" AS source_position,
               "offset" AS landed_seq, '{batch_id}' AS batch_id, "timestamp" AS ingested_at,
               strftime(order_date, '%Y-%m') AS order_month,
               -- versions of a line are ordered by (landed_seq, pos): offset, then line
               "partition" AS fi, "offset" * {MAX_LINES + 1} + line_no AS pos
        FROM (
            SELECT b.*, {enrichment_columns(settings)}
            FROM (SELECT *, {tax_rate_sql(settings)} AS tax_rate FROM pos_lines) b
        )
        """
    )


def prepare_batch(con: duckdb.DuckDBPyConnection, settings: Settings, batch_id: str) -> None:
    """Build ``events``, ``event_lines``, ``quarantine_rows`` and ``valid_all`` from ``records``."""
    _parse_messages(con, settings)
    _type_lines(con, settings)
    _quarantine(con, settings, batch_id)
    _canonical_lines(con)
    _valid(con, settings, batch_id)
