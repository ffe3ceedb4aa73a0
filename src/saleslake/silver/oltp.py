"""One operational extract (bronze Parquet, :mod:`saleslake.sources.postgres`) to silver.

- customers, products, stores: every changed row becomes a reference state
  (:mod:`saleslake.reference`, ``updated_at`` = the row's, ``source_system`` 'oltp'), the
  input of the SCD2 dimensions;
- orders ⋈ order_lines: one canonical silver line per order line (CONTRACT §3):
  ``line_id`` = ``order_line_id``, dates from ``orders.order_ts`` (UTC), geography from
  the order's ship-to columns, customer and product attributes as of the order (the
  reference state valid at ``order_ts``, else the earliest known), ``sales`` =
  quantity × unit_price, ``profit`` = quantity × (unit_price × (1 − discount) −
  unit_cost) (the shop's own definition: net of discount, before shipping),
  enriched like every source (:mod:`saleslake.silver.enrich`; the fraud rules that need
  history are decided in gold);
- a line of a cancelled or soft-deleted order, or a soft-deleted line, is REMOVED from
  silver (and so from gold); a line failing CONTRACT §4 rules is quarantined (and
  removed from silver if an earlier version was valid);
- an updated line replaces its earlier version (``landed_seq`` = extract sequence);
  an unchanged re-read line counts as duplicate and is not rewritten.

The silver commit (upserts and deletes in one Delta MERGE) carries the extract sequence
as the application transaction ``saleslake.oltp``: that number says which row of
``system/oltp_positions`` (written before) is the committed position.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction

from saleslake import reference
from saleslake.config import Settings
from saleslake.contract import QUARANTINE_SCHEMA, SALES_LINES_SCHEMA
from saleslake.crashpoints import crash_point
from saleslake.dbapi import one_row
from saleslake.lake import Lake, ensure_delta, snapshot_connection, snapshot_view_sql, write_delta
from saleslake.silver.bounds import KEY_TEXT_FIELDS, case_reasons, date_checks, key_text_checks, quantity_check
from saleslake.silver.dedup import append_lines, classify, lines_reader, row_hash_sql
from saleslake.silver.enrich import enrichment_columns, tax_rate_sql
from saleslake.sources.postgres import APP_ID, ExtractResult
from saleslake.storage.lease import check_commit

SOURCE = "oltp"


@dataclass
class OltpCounts:
    rows_read: int = 0  # line states read (changed and context)
    rows_valid: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    rows_corrected: int = 0
    removed: int = 0  # lines deleted from silver (cancelled or deleted orders and lines)
    removed_seen: int = 0  # cancelled or deleted line states read (whether in silver or not)
    reference: dict | None = None
    reference_quarantined: dict | None = None  # reference states quarantined, per table


def _files(paths) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def _parquet(con: duckdb.DuckDBPyConnection, name: str, paths: list) -> bool:
    paths = [p for p in paths if p is not None]
    if not paths:
        return False
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM read_parquet({_files(paths)}, union_by_name = true)"
    )
    return True


def register_reference(
    lake: Lake, con: duckdb.DuckDBPyConnection, settings: Settings, extract: ExtractResult
) -> tuple[dict[str, int], dict[str, int]]:
    """Changed customers, products and stores → reference tables (idempotent). A state
    gold could not hold is quarantined instead (:mod:`saleslake.silver.bounds`): an
    ``updated_at`` (its SCD2 validity start) outside the plausible window is
    ``invalid_date:updated_at``, a product category too long for a warehouse key
    ``text_too_long:category``. Returns the states registered and quarantined per table."""
    registered, quarantined, bad = {}, {}, []
    specs = {
        "customers": (
            reference.CUSTOMERS,
            "customer_id, customer_name, segment, city, state, country, postal_code, region, market",
        ),
        "products": (reference.PRODUCTS, "product_id, product_name, category, sub_category, list_price"),
        "stores": (
            reference.STORES,
            "store_id, store_name, channel, city, state, country, postal_code, region, market, currency",
        ),
    }
    for table, (ref, columns) in specs.items():
        t = extract.tables.get(table)
        if t is None or not t.rows:
            continue
        checks = date_checks({"updated_at": "CAST(updated_at AS DATE)"}, settings.quality)
        if table == "products":  # its category is the daily aggregate's (dim_product's)
            checks += key_text_checks({"category": "category"})
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE ref_states AS
                SELECT *, list_filter([{", ".join(case_reasons(checks))}], lambda r: r IS NOT NULL) AS reasons
                FROM (SELECT {columns}, timezone('UTC', updated_at) AS updated_at, '{SOURCE}' AS source_system
                      FROM read_parquet({_files([t.path])}))"""
        )
        rows = con.sql("SELECT * EXCLUDE (reasons) FROM ref_states WHERE len(reasons) = 0").to_arrow_table()
        rows = rows.set_column(
            rows.schema.get_field_index("updated_at"),
            "updated_at",
            rows["updated_at"].cast(pa.timestamp("us", tz="UTC")),
        )
        registered[table] = reference.register(lake, ref, rows)
        rejected = _reference_quarantine_rows(con, lake, extract, table, ref.key, columns)
        if rejected.num_rows:
            quarantined[table] = rejected.num_rows
            bad.append(rejected)
    if bad:
        _append_quarantine(lake, pa.concat_tables(bad))
    return registered, quarantined


def _reference_quarantine_rows(
    con: duckdb.DuckDBPyConnection, lake: Lake, extract: ExtractResult, table: str, key: str, columns: str
) -> pa.Table:
    """Quarantine rows of the states of temp table ``ref_states`` with reasons."""
    names = [c.strip() for c in columns.split(",")] + ["updated_at"]
    raw = (
        "MAP([" + ", ".join(f"'{n}'" for n in names) + "], [" + ", ".join(f"CAST({n} AS VARCHAR)" for n in names) + "])"
    )
    bronze_uri = str(extract.tables[table].path.relative_to(lake.home))
    stamp = "CAST(epoch_us(updated_at) AS VARCHAR)"
    return (
        con.sql(
            f"""
            SELECT md5('{SOURCE}' || chr(31) || '{table}' || chr(31) || CAST({key} AS VARCHAR) || chr(31) || {stamp})
                       AS quarantine_key,
                   '{SOURCE}' AS source_system, reasons, {raw} AS raw,
                   CAST(NULL AS VARCHAR) AS raw_line, CAST(NULL AS VARCHAR) AS order_id,
                   CAST(NULL AS VARCHAR) AS line_id, '{bronze_uri}' AS bronze_uri,
                   'postgres:{table}/' || CAST({key} AS VARCHAR) || '@' || {stamp} AS source_position,
                   CAST({extract.seq} AS BIGINT) AS landed_seq, '{SOURCE}:{extract.extract_id}' AS batch_id,
                   TIMESTAMPTZ '{extract.extracted_at.isoformat()}' AS ingested_at, CAST(NULL AS BLOB) AS raw_bytes
            FROM ref_states WHERE len(reasons) > 0
            """
        )
        .to_arrow_table()
        .cast(QUARANTINE_SCHEMA)
    )


def _append_quarantine(lake: Lake, rows: pa.Table) -> pa.Table:
    """Append the quarantine rows not already there (a rerun of the same extract)."""
    target = ensure_delta(lake.quarantine, QUARANTINE_SCHEMA)
    con = snapshot_connection(lake)
    try:
        con.register("incoming", rows)
        new = (
            con.sql(
                f"""SELECT * FROM incoming WHERE quarantine_key NOT IN (
                    SELECT quarantine_key FROM ({snapshot_view_sql(target)}) WHERE source_system = '{SOURCE}')"""
            )
            .to_arrow_table()
            .cast(QUARANTINE_SCHEMA)
        )
    finally:
        con.close()
    if new.num_rows:
        write_delta(target, new, mode="append")
    return new


def _load_reference(lake: Lake, con: duckdb.DuckDBPyConnection) -> None:
    """ref_<x>: the oltp reference history; first_<x>: each record's earliest state."""
    for name, ref in (("customers", reference.CUSTOMERS), ("products", reference.PRODUCTS)):
        table = ensure_delta(ref.path(lake), ref.schema)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE ref_{name} AS SELECT * FROM ({snapshot_view_sql(table)}) "
            f"WHERE source_system = '{SOURCE}'"
        )
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE first_{name} AS SELECT * FROM ref_{name} "
            f"QUALIFY row_number() OVER (PARTITION BY {ref.key} ORDER BY updated_at) = 1"
        )


def _reasons(settings: Settings) -> str:
    """CONTRACT §4 reasons of a line state, the bounds every source applies included
    (``sales`` and ``profit`` are NULL when quantity × price does not fit DECIMAL(18,4))."""
    checks = [
        *(
            f"CASE WHEN {c} IS NULL THEN 'missing_required:{c}' END"
            for c in ("order_id", "line_id", "order_date", "customer_id", "product_id", "quantity")
        ),
        "CASE WHEN quantity IS NULL OR src_unit_price IS NULL THEN 'missing_required:sales' END",
        "CASE WHEN quantity <= 0 THEN 'non_positive_quantity' END",
        "CASE WHEN sales <= 0 THEN 'non_positive_sales' END",
        "CASE WHEN discount < 0 OR discount > 1 THEN 'discount_out_of_range' END",
        "CASE WHEN ship_date < order_date THEN 'ship_before_order' END",
        *case_reasons(
            [
                *date_checks({"order_date": "order_date", "ship_date": "ship_date"}, settings.quality),
                quantity_check("quantity", settings.quality),
                *key_text_checks({name: name for name in KEY_TEXT_FIELDS}),
            ]
        ),
        "CASE WHEN sales IS NULL AND quantity IS NOT NULL AND src_unit_price IS NOT NULL "
        "THEN 'invalid_number:sales' END",
        "CASE WHEN profit IS NULL AND quantity IS NOT NULL AND src_unit_price IS NOT NULL AND discount IS NOT NULL "
        "AND src_unit_cost IS NOT NULL THEN 'invalid_number:profit' END",
    ]
    return f"list_filter([{', '.join(checks)}], lambda r: r IS NOT NULL)"


def _line_with_order_sql() -> str:
    """SELECT of each line state of the extract (``x_lines``) with its order's (``x_orders``): the
    silver columns a line takes from them, ``src_unit_price``/``src_unit_cost`` as sent,
    ``removed`` (a cancelled or deleted order, or a deleted line), ``changed_at`` and ``pos``."""
    return """
        SELECT CAST(l.order_id AS VARCHAR) AS order_id, CAST(l.order_line_id AS VARCHAR) AS line_id,
               CAST(timezone('UTC', o.order_ts) AS DATE) AS order_date,
               CAST(o.order_ts AS TIMESTAMPTZ) AS order_ts,
               o.ship_date, o.ship_mode, o.order_priority, o.customer_id,
               o.ship_city AS city, o.ship_state AS state, o.ship_country AS country,
               o.ship_postal_code AS postal_code, o.ship_market AS market, o.ship_region AS region,
               o.store_id, l.product_id, CAST(l.quantity AS BIGINT) AS quantity,
               CAST(l.unit_price AS DECIMAL(18,4)) AS src_unit_price,
               CAST(l.unit_cost AS DECIMAL(18,4)) AS src_unit_cost,
               -- in 38 digits, then TRY_: a product beyond DECIMAL(18,4) is invalid_number,
               -- not an extract that fails on every retry
               TRY_CAST(CAST(l.quantity AS DECIMAL(38,0)) * l.unit_price AS DECIMAL(18,4)) AS sales,
               CAST(l.discount AS DECIMAL(9,4)) AS discount,
               TRY_CAST(
                   CAST(l.quantity AS DECIMAL(38,0)) * (l.unit_price * (1 - l.discount) - l.unit_cost)
                   AS DECIMAL(18,4)
               ) AS profit,
               CAST(l.shipping_cost AS DECIMAL(18,4)) AS shipping_cost,
               coalesce(o.currency, 'USD') AS currency,
               (o.order_id IS NOT NULL AND (o.status = 'cancelled' OR o.deleted_at IS NOT NULL))
                   OR l.deleted_at IS NOT NULL AS removed,
               greatest(l.updated_at, o.updated_at) AS changed_at,
               l.order_line_id AS pos
        -- changed rows and their context rows are disjoint (see sources.postgres)
        FROM x_lines l LEFT JOIN x_orders o ON l.order_id = o.order_id
        """


def prepare_lines(con: duckdb.DuckDBPyConnection, lake: Lake, settings: Settings, extract: ExtractResult) -> bool:
    """Temp tables ``oltp_lines`` (every line state of the extract, with ``removed`` and
    ``reasons``) and ``valid`` (valid lines in the silver schema + ``fi``/``pos``)."""
    lines, orders = extract.tables.get("order_lines"), extract.tables.get("orders")
    if lines is None or orders is None:
        return False
    if not _parquet(con, "x_lines", [lines.path, lines.context_path]):
        return False
    _parquet(con, "x_orders", [orders.path, orders.context_path])
    _load_reference(lake, con)
    bronze_uri = str(lines.path.relative_to(lake.home))
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE oltp_lines AS
        WITH j AS ({_line_with_order_sql()})
        SELECT *, {_reasons(settings)} AS reasons FROM (
        SELECT md5('{SOURCE}' || chr(31) || j.order_id || chr(31) || j.line_id) AS line_key, '{SOURCE}' AS source_system,
               j.* EXCLUDE (customer_id, product_id),
               j.customer_id, coalesce(c.customer_name, fc.customer_name) AS customer_name,
               coalesce(c.segment, fc.segment) AS segment,
               j.product_id, coalesce(p.product_name, fp.product_name) AS product_name,
               coalesce(p.category, fp.category) AS category, coalesce(p.sub_category, fp.sub_category) AS sub_category
        FROM j
        ASOF LEFT JOIN ref_customers c ON j.customer_id = c.customer_id AND j.order_ts >= c.updated_at
        LEFT JOIN first_customers fc ON j.customer_id = fc.customer_id
        ASOF LEFT JOIN ref_products p ON j.product_id = p.product_id AND j.order_ts >= p.updated_at
        LEFT JOIN first_products fp ON j.product_id = fp.product_id
        )
        """
    )
    absent = ("payment_method", "card_fingerprint")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE valid AS
        SELECT *, len(fraud_reasons) > 0 AS is_suspected_fraud,
               {row_hash_sql(absent)} AS row_hash,
               '{bronze_uri}' AS bronze_uri,
               'postgres:order_lines/' || line_id || '@' || strftime(timezone('UTC', changed_at), '%Y-%m-%dT%H:%M:%S.%fZ')
                   AS source_position,
               CAST({extract.seq} AS BIGINT) AS landed_seq, '{SOURCE}:{extract.extract_id}' AS batch_id,
               TIMESTAMPTZ '{extract.extracted_at.isoformat()}' AS ingested_at,
               strftime(order_date, '%Y-%m') AS order_month,
               CAST(NULL AS VARCHAR) AS payment_method, CAST(NULL AS VARCHAR) AS card_fingerprint,
               0 AS fi
        FROM (
            SELECT b.* EXCLUDE (src_unit_price, src_unit_cost, removed, changed_at, reasons, pos, tax_rate),
                   b.changed_at, b.pos,
                   {enrichment_columns(settings)}
            FROM (SELECT *, {tax_rate_sql(settings)} AS tax_rate FROM oltp_lines
                  WHERE NOT removed AND len(reasons) = 0) b
        )
        """
    )
    return True


def _quarantine(con: duckdb.DuckDBPyConnection, lake: Lake, extract: ExtractResult) -> pa.Table:
    """Quarantine rows of the extract not already in the quarantine table (a rerun)."""
    target = ensure_delta(lake.quarantine, QUARANTINE_SCHEMA)
    bronze_uri = str(extract.tables["order_lines"].path.relative_to(lake.home))
    rows = (
        con.sql(
            f"""
        SELECT md5('{SOURCE}' || chr(31) || line_key || chr(31) || CAST(epoch_us(changed_at) AS VARCHAR)) AS quarantine_key,
               '{SOURCE}' AS source_system, reasons,
               MAP {{'order_date': CAST(order_date AS VARCHAR), 'ship_date': CAST(ship_date AS VARCHAR),
                    'customer_id': customer_id, 'product_id': product_id, 'quantity': CAST(quantity AS VARCHAR),
                    'unit_price': CAST(src_unit_price AS VARCHAR), 'discount': CAST(discount AS VARCHAR)}} AS raw,
               CAST(NULL AS VARCHAR) AS raw_line, order_id, line_id, '{bronze_uri}' AS bronze_uri,
               'postgres:order_lines/' || line_id AS source_position, CAST({extract.seq} AS BIGINT) AS landed_seq,
               '{SOURCE}:{extract.extract_id}' AS batch_id,
               TIMESTAMPTZ '{extract.extracted_at.isoformat()}' AS ingested_at, CAST(NULL AS BLOB) AS raw_bytes
        FROM oltp_lines WHERE NOT removed AND len(reasons) > 0
          AND md5('{SOURCE}' || chr(31) || line_key || chr(31) || CAST(epoch_us(changed_at) AS VARCHAR)) NOT IN (
              SELECT quarantine_key FROM ({snapshot_view_sql(target)}) WHERE source_system = '{SOURCE}')
        """
        )
        .to_arrow_table()
        .cast(QUARANTINE_SCHEMA)
    )
    if rows.num_rows:
        write_delta(target, rows, mode="append")
    return rows


def commit_lines(con: duckdb.DuckDBPyConnection, lake: Lake, extract: ExtractResult, has_lines: bool) -> OltpCounts:
    """Upserts and removals in one silver commit carrying the extract sequence."""
    target = ensure_delta(lake.sales_lines, SALES_LINES_SCHEMA, ["order_month"])
    commit = CommitProperties(app_transactions=[Transaction(APP_ID, extract.seq)])
    counts = OltpCounts()
    if not has_lines:
        _commit_position(target, commit)
        return counts
    _quarantine(con, lake, extract)
    crash_point("oltp.quarantine.after_commit")
    dedup = classify(con, target, -1, existing_filter=f"s.source_system = '{SOURCE}'")
    removed_seen, bad = one_row(
        con.execute(
            "SELECT count(*) FILTER (WHERE removed), count(*) FILTER (WHERE NOT removed AND len(reasons) > 0) "
            "FROM oltp_lines"
        )
    )
    n_gone = _gone_lines(con, target)
    _write_lines(con, target, commit)
    target.update_incremental()
    held = target.transaction_version(APP_ID)
    if held is None or held < extract.seq:  # a write that changed nothing may commit nothing
        _commit_position(target, commit)
    counts.rows_valid, counts.rows_duplicate, counts.rows_corrected = dedup.valid, dedup.duplicate, dedup.corrected
    counts.rows_quarantined = int(bad)
    counts.rows_read = counts.rows_valid + counts.rows_duplicate + counts.rows_quarantined
    counts.removed, counts.removed_seen = int(n_gone), int(removed_seen)
    return counts


def _commit_position(target: DeltaTable, commit: CommitProperties) -> None:
    """An empty silver commit that records the extract's position (``commit``) alone."""
    write_delta(
        target,
        SALES_LINES_SCHEMA.empty_table(),
        mode="append",
        partition_by=["order_month"],
        commit_properties=commit,
    )


def _gone_lines(con: duckdb.DuckDBPyConnection, target: DeltaTable) -> int:
    """Temp table ``gone``: the lines to take out of silver (removed or now invalid, where
    silver holds them); returns how many."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE gone AS
        SELECT s.line_key, s.order_month FROM ({snapshot_view_sql(target)}) s
        WHERE s.source_system = '{SOURCE}'
          AND s.line_key IN (SELECT line_key FROM oltp_lines WHERE removed OR len(reasons) > 0)
        """
    )
    (n_gone,) = one_row(con.execute("SELECT count(*) FROM gone"))
    return n_gone


def _write_lines(con: duckdb.DuckDBPyConnection, target: DeltaTable, commit: CommitProperties) -> None:
    """View ``upserts`` into silver and table ``gone`` out of it, in one commit carrying
    ``commit``: a streamed append when no month holds a line to replace or remove, else a
    MERGE over those months."""
    months = sorted(
        {r[0] for r in con.execute("SELECT order_month FROM existing UNION SELECT order_month FROM gone").fetchall()}
    )
    columns = SALES_LINES_SCHEMA.names
    select = ", ".join(f'"{c}"' for c in columns)
    if not months:
        # nothing to replace or remove (e.g. the first extract): a streamed append, memory bounded
        append_lines(target, lines_reader(con, f"SELECT {select} FROM upserts"), commit)
        return
    nulls = ", ".join(
        f'CAST(NULL AS {t}) AS "{c}"' if c not in ("line_key", "order_month") else f'"{c}"' for c, t in _duck_types()
    )
    source = con.sql(
        f"SELECT {select}, false AS _delete FROM upserts UNION ALL SELECT {nulls}, true FROM gone"
    ).to_arrow_table()
    source = source.cast(SALES_LINES_SCHEMA.append(pa.field("_delete", pa.bool_())))
    month_list = ", ".join(f"'{m}'" for m in months)
    updates = {c: f"s.`{c}`" for c in columns}
    check_commit(target.table_uri)
    (
        target.merge(
            source,
            predicate=f"t.line_key = s.line_key AND t.order_month IN ({month_list})",
            source_alias="s",
            target_alias="t",
            commit_properties=commit,
        )
        .when_matched_delete(predicate="s._delete = true")
        .when_matched_update(updates=updates, predicate="s._delete = false")
        .when_not_matched_insert(updates=updates, predicate="s._delete = false")
        .execute()
    )


_TYPES: list[tuple[str, str]] | None = None


def _duck_types() -> list[tuple[str, str]]:
    global _TYPES
    if _TYPES is None:
        from saleslake.lake import duckdb_type_sql

        _TYPES = duckdb_type_sql(SALES_LINES_SCHEMA)
    return _TYPES


def apply_extract(lake: Lake, settings: Settings, extract: ExtractResult) -> OltpCounts:
    """Reference changes, quarantine and silver lines of one extract (call under the
    silver commit lock, after the extract's positions are written)."""
    from saleslake.silver.process import connect

    con = connect(settings, lake)
    try:
        con.execute("SET TimeZone = 'UTC'")
        refs, refs_quarantined = register_reference(lake, con, settings, extract)
        crash_point("oltp.reference.after_commit")
        has_lines = prepare_lines(con, lake, settings, extract)
        counts = commit_lines(con, lake, extract, has_lines)
        counts.reference = refs
        counts.reference_quarantined = refs_quarantined
        return counts
    finally:
        con.close()


__all__ = ["OltpCounts", "apply_extract"]
