"""Point-of-sale events (CONTRACT §6) to canonical silver lines, in SQL over one batch.

Input: temp table ``records`` (topic, partition, offset, key, timestamp, value) with the
batch's Kafka records, and temp tables ``ref_stores`` / ``ref_products`` (reference
states, see :mod:`saleslake.reference`). :func:`prepare_batch` builds

- ``events``: one row per message, parsed JSON and its message-level ``reasons``
  (``oversized_message``, ``invalid_json``, ``schema_violation:<field>``): such a message
  is quarantined whole, with its raw bytes;
- ``event_lines``: one row per line of a well-formed message, typed, with its line-level
  ``reasons`` (CONTRACT §4: ``non_positive_quantity``, ``non_positive_sales``,
  ``discount_out_of_range``): such a line is quarantined, its siblings are valid;
- ``quarantine_rows``: both kinds in the quarantine schema;
- ``valid_all``: the valid lines in the silver schema, enriched (tax, fraud, dq), plus the
  ``fi``/``pos`` ordering columns :func:`saleslake.silver.dedup.classify` expects.

Velocity and quantity-norm fraud rules need history; :func:`prepare_batch` reads it from
temp tables ``recent_tx`` and ``product_norms`` that the stream keeps (see
:mod:`saleslake.stream`).
"""

from __future__ import annotations

import duckdb

from saleslake.config import Settings
from saleslake.silver.dedup import row_hash_sql
from saleslake.silver.enrich import enrichment_columns, tax_rate_sql

SCHEMA_NAME = "pos.sale.v1"
BRONZE_URI = "bronze/events/pos"
WALK_IN = "WALK-IN"
PAYMENT_METHODS = ("card", "cash", "mobile", "gift_card")
#: A basket longer than this is not a till receipt.
MAX_LINES = 500

_INTEGER = "('UBIGINT', 'BIGINT')"


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _string_field(path: str, name: str, nullable: bool = False) -> str:
    """Reason when the field is absent, not a string, or empty (null allowed if nullable)."""
    allowed = "('VARCHAR', 'NULL')" if nullable else "('VARCHAR')"
    return (
        f"CASE WHEN json_type(j, '{path}') IS NULL OR json_type(j, '{path}') NOT IN {allowed} "
        f"OR json_extract_string(j, '{path}') = '' THEN 'schema_violation:{name}' END"
    )


def _message_checks(settings: Settings) -> list[str]:
    currencies = ", ".join(_text(c) for c in settings.stream.currencies)
    return [
        f"CASE WHEN json_extract_string(j, '$.schema') IS DISTINCT FROM '{SCHEMA_NAME}' "
        "THEN 'schema_violation:schema' END",
        _string_field("$.event_id", "event_id"),
        _string_field("$.transaction_id", "transaction_id"),
        # ISO 8601 with an explicit offset: a time without one is ambiguous
        "CASE WHEN json_type(j, '$.event_time') IS DISTINCT FROM 'VARCHAR' "
        r"OR NOT regexp_matches(json_extract_string(j, '$.event_time'), '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)$') "
        "OR TRY_CAST(json_extract_string(j, '$.event_time') AS TIMESTAMPTZ) IS NULL "
        "THEN 'schema_violation:event_time' END",
        _string_field("$.store_id", "store_id"),
        _string_field("$.terminal_id", "terminal_id"),
        _string_field("$.customer_id", "customer_id", nullable=True),
        f"CASE WHEN json_type(j, '$.currency') IS DISTINCT FROM 'VARCHAR' "
        f"OR json_extract_string(j, '$.currency') NOT IN ({currencies}) THEN 'schema_violation:currency' END",
        f"CASE WHEN json_type(j, '$.payment_method') IS DISTINCT FROM 'VARCHAR' "
        f"OR json_extract_string(j, '$.payment_method') NOT IN ({', '.join(map(_text, PAYMENT_METHODS))}) "
        "THEN 'schema_violation:payment_method' END",
        _string_field("$.card_fingerprint", "card_fingerprint", nullable=True),
        "CASE WHEN json_type(j, '$.lines') IS DISTINCT FROM 'ARRAY' OR json_array_length(j, '$.lines') = 0 "
        f"OR json_array_length(j, '$.lines') > {MAX_LINES} THEN 'schema_violation:lines' END",
    ]


def _line_checks() -> list[str]:
    return [
        "CASE WHEN json_type(lj) IS DISTINCT FROM 'OBJECT' THEN 'schema_violation:lines' END",
        f"CASE WHEN json_type(lj, '$.line_no') NOT IN {_INTEGER} OR json_type(lj, '$.line_no') IS NULL "
        "OR TRY_CAST(json_extract_string(lj, '$.line_no') AS BIGINT) IS NULL THEN 'schema_violation:lines.line_no' END",
        "CASE WHEN json_type(lj, '$.product_id') IS DISTINCT FROM 'VARCHAR' OR json_extract_string(lj, '$.product_id') = '' "
        "THEN 'schema_violation:lines.product_id' END",
        f"CASE WHEN json_type(lj, '$.quantity') NOT IN {_INTEGER} OR json_type(lj, '$.quantity') IS NULL "
        "OR TRY_CAST(json_extract_string(lj, '$.quantity') AS BIGINT) IS NULL THEN 'schema_violation:lines.quantity' END",
        # money is a decimal string, never a JSON number (floats lose cents)
        "CASE WHEN json_type(lj, '$.unit_price') IS DISTINCT FROM 'VARCHAR' "
        "OR TRY_CAST(json_extract_string(lj, '$.unit_price') AS DECIMAL(18,4)) IS NULL "
        "THEN 'schema_violation:lines.unit_price' END",
        "CASE WHEN json_type(lj, '$.discount') IS DISTINCT FROM 'VARCHAR' "
        "OR TRY_CAST(json_extract_string(lj, '$.discount') AS DECIMAL(9,4)) IS NULL "
        "THEN 'schema_violation:lines.discount' END",
    ]


def _reasons(checks: list[str]) -> str:
    return f"list_filter([{', '.join(checks)}], lambda r: r IS NOT NULL)"


def _parse_messages(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """``events``: every record with its JSON (when it is some) and message-level reasons."""
    limit = settings.stream.max_message_bytes
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE decoded AS
        SELECT *, octet_length(value) AS size,
               CASE WHEN octet_length(value) <= {limit} THEN try(decode(value)) END AS text
        FROM records
        """
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE events AS
        SELECT topic, "partition", "offset", "timestamp", value, text, j,
               CASE WHEN size > {limit} THEN ['oversized_message']
                    WHEN j IS NULL OR json_type(j) <> 'OBJECT' THEN ['invalid_json']
                    ELSE {_reasons(_message_checks(settings))} END AS reasons
        FROM (SELECT *, CASE WHEN coalesce(json_valid(text), false) THEN CAST(text AS JSON) END AS j FROM decoded)
        """
    )
    # Lines are checked one by one; a malformed line makes the whole message malformed.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE raw_lines AS
        SELECT "partition", "offset", idx, lj, {_reasons(_line_checks())} AS reasons
        FROM (
            SELECT "partition", "offset", unnest(json_extract(j, '$.lines[*]')) AS lj,
                   unnest(range(1, CAST(json_array_length(j, '$.lines') AS BIGINT) + 1)) AS idx
            FROM events WHERE len(reasons) = 0
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
            GROUP BY "partition", "offset", json_extract_string(lj, '$.line_no') HAVING count(*) > 1
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


def _type_lines(con: duckdb.DuckDBPyConnection) -> None:
    """``event_lines``: the lines of well-formed messages, typed, with line-level reasons."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE event_lines AS
        SELECT *,
               {_reasons([
                   "CASE WHEN quantity <= 0 THEN 'non_positive_quantity' END",
                   "CASE WHEN unit_price <= 0 THEN 'non_positive_sales' END",
                   "CASE WHEN discount < 0 OR discount > 1 THEN 'discount_out_of_range' END",
               ])} AS reasons
        FROM (
            SELECT e.topic, e."partition", e."offset", e."timestamp", l.idx, l.lj,
                   json_extract_string(e.j, '$.transaction_id') AS transaction_id,
                   CAST(json_extract_string(e.j, '$.event_time') AS TIMESTAMPTZ) AS order_ts,
                   json_extract_string(e.j, '$.store_id') AS store_id,
                   json_extract_string(e.j, '$.customer_id') AS customer_id,
                   json_extract_string(e.j, '$.currency') AS currency,
                   json_extract_string(e.j, '$.payment_method') AS payment_method,
                   json_extract_string(e.j, '$.card_fingerprint') AS card_fingerprint,
                   CAST(json_extract_string(l.lj, '$.line_no') AS BIGINT) AS line_no,
                   json_extract_string(l.lj, '$.product_id') AS product_id,
                   CAST(json_extract_string(l.lj, '$.quantity') AS BIGINT) AS quantity,
                   CAST(json_extract_string(l.lj, '$.unit_price') AS DECIMAL(18,4)) AS unit_price,
                   CAST(json_extract_string(l.lj, '$.discount') AS DECIMAL(9,4)) AS discount
            FROM events e JOIN raw_lines l USING ("partition", "offset")
            WHERE len(e.reasons) = 0
        )
        """
    )


def _quarantine(con: duckdb.DuckDBPyConnection, batch_id: str) -> None:
    position = "'kafka:' || topic || '/' || \"partition\" || '@' || \"offset\""
    key = "md5('pos' || chr(31) || topic || chr(31) || \"partition\" || chr(31) || \"offset\""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP VIEW quarantine_rows AS
        SELECT {key} || ')') AS quarantine_key, 'pos' AS source_system, reasons,
               CAST(NULL AS MAP(VARCHAR, VARCHAR)) AS raw, left(text, 20000) AS raw_line,
               CASE WHEN j IS NOT NULL THEN json_extract_string(j, '$.transaction_id') END AS order_id,
               CAST(NULL AS VARCHAR) AS line_id, '{BRONZE_URI}' AS bronze_uri, {position} AS source_position,
               "offset" AS landed_seq, '{batch_id}' AS batch_id, "timestamp" AS ingested_at, value AS raw_bytes,
               "partition"
        FROM events WHERE len(reasons) > 0
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
               l.quantity, CAST(l.quantity * l.unit_price AS DECIMAL(18,4)) AS sales, l.discount,
               CAST(NULL AS DECIMAL(18,4)) AS profit, CAST(NULL AS DECIMAL(18,4)) AS shipping_cost,
               l.currency, l.payment_method, l.card_fingerprint,
               l.topic, l."partition", l."offset", l."timestamp", l.line_no
        FROM event_lines l
        ASOF LEFT JOIN ref_stores s ON l.store_id = s.store_id AND l.order_ts >= s.updated_at
        ASOF LEFT JOIN ref_products p ON l.product_id = p.product_id AND l.order_ts >= p.updated_at
        WHERE len(l.reasons) = 0
        """
    )


def _valid(con: duckdb.DuckDBPyConnection, settings: Settings, batch_id: str) -> None:
    fraud = settings.fraud
    window = int(fraud.velocity_window_seconds)
    # Transactions of this batch and the recent past, one row each, per card or customer.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE batch_tx AS
        SELECT order_id, any_value(velocity_key) AS velocity_key, min(order_ts) AS order_ts
        FROM (SELECT order_id, order_ts,
                     coalesce(card_fingerprint, CASE WHEN customer_id <> '{WALK_IN}' THEN customer_id END)
                         AS velocity_key
              FROM pos_lines)
        WHERE velocity_key IS NOT NULL GROUP BY order_id
        """
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE velocity AS
        SELECT order_id FROM (
            SELECT order_id, in_batch,
                   count(*) OVER (PARTITION BY velocity_key ORDER BY order_ts
                                  RANGE BETWEEN INTERVAL {window} SECOND PRECEDING AND CURRENT ROW) AS recent
            FROM (SELECT order_id, velocity_key, order_ts, true AS in_batch FROM batch_tx
                  UNION ALL
                  SELECT order_id, velocity_key, order_ts, false FROM recent_tx
                  WHERE order_id NOT IN (SELECT order_id FROM batch_tx))
        ) WHERE in_batch AND recent > {int(fraud.velocity_max_transactions)}
        """
    )
    multiple = f"CAST('{fraud.quantity_norm_multiple}' AS DECIMAL(18,4))"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP VIEW valid_all AS
        SELECT * EXCLUDE (history_reasons, fraud_reasons, topic, "partition", "offset", "timestamp", line_no),
               list_concat(fraud_reasons, history_reasons) AS fraud_reasons,
               len(list_concat(fraud_reasons, history_reasons)) > 0 AS is_suspected_fraud,
               {row_hash_sql()} AS row_hash,
               '{BRONZE_URI}' AS bronze_uri,
               'kafka:' || topic || '/' || "partition" || '@' || "offset" AS source_position,
               "offset" AS landed_seq, '{batch_id}' AS batch_id, "timestamp" AS ingested_at,
               strftime(order_date, '%Y-%m') AS order_month,
               -- versions of a line are ordered by (landed_seq, pos): offset, then line
               "partition" AS fi, "offset" * {MAX_LINES + 1} + line_no AS pos
        FROM (
            SELECT b.*, {enrichment_columns(settings)},
                   list_filter([
                       CASE WHEN b.order_id IN (SELECT order_id FROM velocity) THEN 'velocity' END,
                       CASE WHEN n.lines >= {int(fraud.quantity_norm_min_lines)}
                                 AND b.quantity > {multiple} * n.quantity_sum / n.lines
                            THEN 'quantity_above_norm' END
                   ], lambda r: r IS NOT NULL) AS history_reasons
            FROM (SELECT *, {tax_rate_sql(settings)} AS tax_rate FROM pos_lines) b
            LEFT JOIN product_norms n USING (product_id)
        )
        """
    )


def prepare_batch(con: duckdb.DuckDBPyConnection, settings: Settings, batch_id: str) -> None:
    """Build ``events``, ``event_lines``, ``quarantine_rows`` and ``valid_all`` from ``records``."""
    _parse_messages(con, settings)
    _type_lines(con)
    _quarantine(con, batch_id)
    _canonical_lines(con)
    _valid(con, settings, batch_id)


def create_state_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Empty history tables (the stream fills them from silver at start)."""
    con.execute(
        "CREATE TEMP TABLE IF NOT EXISTS recent_tx (order_id VARCHAR, velocity_key VARCHAR, order_ts TIMESTAMPTZ)"
    )
    con.execute(
        "CREATE TEMP TABLE IF NOT EXISTS product_norms (product_id VARCHAR, lines BIGINT, quantity_sum HUGEINT)"
    )


def remember_batch(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """After a commit: add the batch to the fraud history, forget what left the window."""
    window = int(settings.fraud.velocity_window_seconds)
    con.execute("INSERT INTO recent_tx SELECT * FROM batch_tx WHERE order_id NOT IN (SELECT order_id FROM recent_tx)")
    con.execute(
        f"DELETE FROM recent_tx WHERE order_ts < (SELECT max(order_ts) FROM recent_tx) - INTERVAL {window} SECOND"
    )
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE product_norms AS
        SELECT product_id, sum(lines) AS lines, sum(quantity_sum) AS quantity_sum FROM (
            SELECT * FROM product_norms
            UNION ALL SELECT product_id, count(*), sum(quantity) FROM pos_lines GROUP BY product_id
        ) GROUP BY product_id
        """
    )
