"""Incremental extract of the operational PostgreSQL database (``saleslake ingest postgres``).

Per logical table (``settings.oltp.tables``: the demo shop of ``saleslake generate oltp``
by default), the rows changed since the last committed position are read:

- position = watermark ``(updated_at, key)`` plus the *tail*: the (key, updated_at) pairs
  already taken with ``updated_at >= watermark - overlap``. Each extract re-reads
  ``updated_at >= watermark - overlap`` and drops the pairs of the tail, so a transaction
  that commits late with an older ``updated_at`` (within the overlap) is not lost, rows
  sharing one ``updated_at`` are never skipped, and nothing is taken twice;
- all tables are read in ONE ``READ ONLY, REPEATABLE READ`` transaction (one snapshot:
  an order and its lines are consistent) as the read-only ``reader`` role, with the
  configured statement and lock timeouts. Plain SELECTs take only ACCESS SHARE locks,
  which block no reader or writer of rows (only DDL);
- each table streams out of ``COPY (SELECT ...) TO STDOUT (FORMAT CSV)``; the stream is
  parsed by Arrow's C++ CSV reader in bounded blocks (``oltp.batch_bytes``) and written
  batch by batch to an immutable bronze Parquet file
  ``bronze/oltp/<table>/ingest_date=YYYY-MM-DD/<extract_id>.parquet``: memory stays
  bounded whatever the table size;
- an order that changed needs all its lines and a line that changed needs its order:
  those unchanged companions are read in the same snapshot into
  ``<extract_id>.context.parquet`` (not part of the change set, never a new position).

A lost connection (server restart, ``pg_terminate_backend``) retries the whole read with
backoff; the files of the failed attempt are removed, so nothing is lost or doubled. The
positions commit with the silver data they produced (:mod:`saleslake.silver.oltp`).

Usage::

    from saleslake.sources.postgres import read_positions, extract
    positions = read_positions(lake, settings)
    result = extract(lake, settings, positions, tables=["orders", "order_lines"])
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from saleslake.config import OltpSettings, Settings
from saleslake.crashpoints import crash_point
from saleslake.dbapi import one_row
from saleslake.errors import SaleslakeError, TransientError, UserError
from saleslake.lake import Lake, TableLocation, open_delta, write_delta
from saleslake.retry import retry

APP_ID = "saleslake.oltp"

# Where a store or a customer is (and, prefixed ship_, where an order goes): the same
# columns in that order wherever a place is described.
LOCATION_COLUMNS = tuple((name, "text") for name in ("city", "state", "country", "postal_code", "region", "market"))
# Every shop table's change tracking: when a row last changed, and its soft deletion.
CHANGE_COLUMNS = (("updated_at", "timestamptz"), ("deleted_at", "timestamptz"))

# Logical columns of each shop table and their source types (the demo schema); the
# first is the table's key.
TABLE_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "stores": (
        ("store_id", "text"),
        ("store_name", "text"),
        ("channel", "text"),
        *LOCATION_COLUMNS,
        ("currency", "text"),
        *CHANGE_COLUMNS,
    ),
    "customers": (
        ("customer_id", "text"),
        ("customer_name", "text"),
        ("segment", "text"),
        *LOCATION_COLUMNS,
        *CHANGE_COLUMNS,
    ),
    "products": (
        ("product_id", "text"),
        ("product_name", "text"),
        ("category", "text"),
        ("sub_category", "text"),
        ("list_price", "numeric"),
        ("unit_cost", "numeric"),
        *CHANGE_COLUMNS,
    ),
    "orders": (
        ("order_id", "int8"),
        ("customer_id", "text"),
        ("store_id", "text"),
        ("channel", "text"),
        ("order_ts", "timestamptz"),
        ("status", "text"),
        ("ship_mode", "text"),
        ("order_priority", "text"),
        ("ship_date", "date"),
        *((f"ship_{name}", kind) for name, kind in LOCATION_COLUMNS),
        ("currency", "text"),
        *CHANGE_COLUMNS,
    ),
    "order_lines": (
        ("order_line_id", "int8"),
        ("order_id", "int8"),
        ("line_no", "int4"),
        ("product_id", "text"),
        ("quantity", "int4"),
        ("unit_price", "numeric"),
        ("discount", "numeric"),
        ("unit_cost", "numeric"),
        ("shipping_cost", "numeric"),
        *CHANGE_COLUMNS,
    ),
}
# Extraction order: reference tables first; orders and lines are one unit.
TABLE_ORDER = ("stores", "customers", "products", "orders", "order_lines")
SALES_TABLES = ("orders", "order_lines")

ARROW_TYPES = {
    "text": pa.string(),
    "int8": pa.int64(),
    "int4": pa.int32(),
    "numeric": pa.decimal128(18, 4),
    "date": pa.date32(),
    "timestamptz": pa.timestamp("us", tz="UTC"),
}
# What the source may declare for each expected type (anything else is a type change).
COMPATIBLE = {
    "text": {"text", "varchar", "bpchar"},
    "int8": {"int8", "int4", "int2"},
    "int4": {"int4", "int2"},
    "numeric": {"numeric"},
    "date": {"date"},
    "timestamptz": {"timestamptz"},
}

POSITIONS_SCHEMA = pa.schema(
    [
        ("extract_seq", pa.int64()),
        ("extract_id", pa.string()),
        ("table_name", pa.string()),
        ("watermark_ts", pa.timestamp("us", tz="UTC")),
        ("watermark_key", pa.string()),
        ("tail", pa.list_(pa.struct([("key", pa.string()), ("updated_at", pa.timestamp("us", tz="UTC"))]))),
        ("rows", pa.int64()),  # changed rows taken by this extract
        ("context_rows", pa.int64()),
        ("bronze_uri", pa.string()),
        ("context_uri", pa.string()),
        ("extracted_at", pa.timestamp("us", tz="UTC")),
    ]
)


class OltpSourceError(UserError):
    """The source does not have the tables, columns or types the mapping needs."""


def positions_path(lake: Lake) -> TableLocation:
    return lake.oltp_positions


def bronze_dir(lake: Lake) -> Path:
    return lake.bronze / "oltp"


# -- positions ------------------------------------------------------------------------------


@dataclass
class TablePosition:
    table: str
    watermark_ts: datetime | None = None
    watermark_key: str | None = None
    tail: list[tuple[str, datetime]] = field(default_factory=list)


@dataclass
class Positions:
    committed_seq: int  # the extract sequence silver committed (-1: none)
    next_seq: int
    tables: dict[str, TablePosition]


def committed_seq(lake: Lake) -> int:
    table = open_delta(lake.sales_lines)
    if table is None:
        return -1
    version = table.transaction_version(APP_ID)
    return -1 if version is None else int(version)


def read_positions(lake: Lake) -> Positions:
    """The positions of the last extract silver committed (rows of a later extract that
    never committed are ignored: that extract is simply done again)."""
    from saleslake.lake import snapshot_connection, snapshot_view_sql

    committed = committed_seq(lake)
    table = open_delta(positions_path(lake))
    tables = {name: TablePosition(name) for name in TABLE_ORDER}
    if table is None:
        if committed >= 0:
            raise SaleslakeError(f"silver holds operational extract {committed} but {positions_path(lake)} is missing")
        return Positions(committed, 0, tables)
    con = snapshot_connection(lake)
    try:
        rows = con.sql(f"SELECT * FROM ({snapshot_view_sql(table)}) WHERE extract_seq = {committed}").to_arrow_table()
        (top,) = one_row(con.execute(f"SELECT coalesce(max(extract_seq), -1) FROM ({snapshot_view_sql(table)})"))
    finally:
        con.close()
    if committed >= 0 and rows.num_rows == 0:
        raise SaleslakeError(f"no positions of committed operational extract {committed} in {positions_path(lake)}")
    for r in rows.to_pylist():
        tables[r["table_name"]] = TablePosition(
            r["table_name"],
            r["watermark_ts"],
            r["watermark_key"],
            [(t["key"], t["updated_at"]) for t in (r["tail"] or [])],
        )
    return Positions(committed, max(int(top), committed) + 1, tables)


def write_positions(lake: Lake, rows: list[dict]) -> None:
    write_delta(positions_path(lake), pa.Table.from_pylist(rows, schema=POSITIONS_SCHEMA), mode="append")


# -- source checks ---------------------------------------------------------------------------


def _source_columns(oltp: OltpSettings, table: str) -> list[tuple[str, str, str]]:
    """(logical name, source column, expected type) of a logical table."""
    spec = oltp.tables[table]
    out = []
    for name, typ in TABLE_COLUMNS[table]:
        source = spec.columns.get(
            name, spec.updated_at if name == "updated_at" else spec.key if name == TABLE_COLUMNS[table][0][0] else name
        )
        out.append((name, source, typ))
    return out


def _relation(oltp: OltpSettings, table: str) -> tuple[str, str]:
    source = oltp.tables[table].source
    return tuple(source.split(".", 1)) if "." in source else (oltp.db_schema, source)  # type: ignore[return-value]


def check_source(conn, oltp: OltpSettings, tables: Iterable[str], where: str) -> None:
    """One clear error line for a missing table or column or a changed type."""
    for table in tables:
        schema, name = _relation(oltp, table)
        found = dict(
            conn.execute(
                "SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_type t ON t.oid = a.atttypid "
                "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped",
                (schema, name),
            ).fetchall()
        )
        if not found:
            raise OltpSourceError(
                f"table {schema}.{name} (logical {table}) not found in {where}, or the reader "
                "role may not see it; check settings oltp.tables"
            )
        for logical, column, typ in _source_columns(oltp, table):
            if column not in found:
                raise OltpSourceError(
                    f"column {schema}.{name}.{column} not found in {where} "
                    f"(mapped to {table}.{logical}); check settings oltp.tables.{table}.columns"
                )
            if found[column] not in COMPATIBLE[typ]:
                raise OltpSourceError(
                    f"column {schema}.{name}.{column} has type {found[column]} in {where}, "
                    f"expected {typ}: the source's type changed; map another column or fix the source"
                )


# -- reading -------------------------------------------------------------------------------


def _select_sql(oltp: OltpSettings, table: str) -> str:
    """SELECT of the logical columns (timestamps as UTC text Arrow parses exactly)."""
    from psycopg import sql

    schema, name = _relation(oltp, table)
    items = []
    for logical, column, typ in _source_columns(oltp, table):
        ident = sql.Identifier(column).as_string(None)
        expr = f"({ident} AT TIME ZONE 'UTC')" if typ == "timestamptz" else ident
        items.append(f"{expr} AS {sql.Identifier(logical).as_string(None)}")
    return f"SELECT {', '.join(items)} FROM {sql.Identifier(schema, name).as_string(None)}"


def _arrow_schema(table: str) -> pa.Schema:
    return pa.schema([(n, ARROW_TYPES[t]) for n, t in TABLE_COLUMNS[table]])


def _csv_types(table: str) -> dict[str, pa.DataType]:
    return {n: (pa.timestamp("us") if t == "timestamptz" else ARROW_TYPES[t]) for n, t in TABLE_COLUMNS[table]}


def copy_to_parquet(
    conn,
    query: str,
    table: str,
    path: Path,
    batch_bytes: int,
    keep: Callable[[pa.RecordBatch], pa.RecordBatch] | None = None,
    seen: Callable[[pa.RecordBatch], None] | None = None,
) -> int:
    """Stream ``COPY (query) TO STDOUT (FORMAT CSV)`` into one Parquet file; returns the
    rows written. COPY sends one row per message, so blocks of about ``batch_bytes`` are
    cut at row boundaries and each is parsed by Arrow's multi-threaded CSV reader: memory
    stays bounded, Python touches each row once. ``seen`` gets every batch read,
    ``keep`` filters what is written."""
    schema = _arrow_schema(table)
    read = pacsv.ReadOptions(column_names=schema.names, block_size=max(batch_bytes, 1 << 20), use_threads=True)
    parse = pacsv.ParseOptions(newlines_in_values=True)
    convert = pacsv.ConvertOptions(
        column_types=_csv_types(table), strings_can_be_null=True, quoted_strings_can_be_null=False, null_values=[""]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    rows = 0

    def flush(parts: list) -> None:
        nonlocal rows
        block = pacsv.read_csv(
            pa.py_buffer(b"".join(parts)), read_options=read, parse_options=parse, convert_options=convert
        )
        block = pa.Table.from_arrays([col.cast(f.type) for col, f in zip(block.columns, schema)], schema=schema)
        for batch in block.to_batches():
            if seen:
                seen(batch)
            if keep:
                batch = keep(batch)
            if batch.num_rows:
                writer.write_batch(batch)
                rows += batch.num_rows

    writer = pq.ParquetWriter(tmp, schema, compression="lz4")
    try:
        with conn.cursor() as cur, cur.copy(f"COPY ({query}) TO STDOUT (FORMAT CSV)") as copy:
            parts: list = []
            size = 0
            for chunk in copy:
                parts.append(chunk)
                size += len(chunk)
                if size >= batch_bytes:
                    flush(parts)
                    parts, size = [], 0
            if parts:
                flush(parts)
    finally:
        writer.close()
    tmp.replace(path)
    return rows


@dataclass
class TableExtract:
    table: str
    path: Path
    position: TablePosition
    rows: int = 0
    context_rows: int = 0
    context_path: Path | None = None


@dataclass
class ExtractResult:
    seq: int
    extract_id: str
    extracted_at: datetime
    tables: dict[str, TableExtract] = field(default_factory=dict)
    seconds: float = 0.0
    attempts: int = 1

    @property
    def rows(self) -> int:
        return sum(t.rows + t.context_rows for t in self.tables.values())


def _key_text(batch: pa.RecordBatch | pa.Table, key: str) -> pa.Array:
    return pc.cast(batch[key], pa.string())


def _pair_text(keys: pa.Array, stamps: pa.Array) -> pa.Array:
    micros = pc.cast(pc.cast(stamps, pa.timestamp("us", tz="UTC")).cast(pa.int64()), pa.string())
    return pc.binary_join_element_wise(keys, micros, "|")


class _Tracker:
    """Filters a table's re-read rows against the tail and tracks the new watermark/tail."""

    def __init__(self, table: str, position: TablePosition, overlap: timedelta):
        self.table, self.position, self.overlap = table, position, overlap
        self.key = TABLE_COLUMNS[table][0][0]
        self.tail = {f"{k}|{_micros(u)}": (k, u) for k, u in position.tail}
        self.tail_set = pa.array(list(self.tail), pa.string())
        self.max_ts = position.watermark_ts
        self.max_key = position.watermark_key
        self.recent: list[tuple[str, datetime]] = []

    def keep(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if not len(self.tail_set) or not batch.num_rows:
            return batch
        pairs = _pair_text(_key_text(batch, self.key), batch["updated_at"])
        return batch.filter(pc.invert(pc.is_in(pairs, value_set=self.tail_set)))

    def seen(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        top = pc.max(batch["updated_at"]).as_py()
        if self.max_ts is None or top > self.max_ts:
            self.max_ts = top
        floor = pa.scalar(self.max_ts - self.overlap, pa.timestamp("us", tz="UTC"))
        near = batch.filter(pc.greater_equal(batch["updated_at"], floor))
        self.recent.extend(zip(_key_text(near, self.key).to_pylist(), near["updated_at"].to_pylist()))
        if len(self.recent) > 200_000:
            self._trim()

    def _trim(self) -> None:
        if self.max_ts is None:
            return
        floor = self.max_ts - self.overlap
        self.recent = [(k, u) for k, u in self.recent if u >= floor]

    def finish(self) -> TablePosition:
        self._trim()
        if self.max_ts is None:
            return TablePosition(self.table)
        floor = self.max_ts - self.overlap
        tail = {f"{k}|{_micros(u)}": (k, u) for k, u in [*self.tail.values(), *self.recent] if u >= floor}
        at_top = [k for k, u in tail.values() if u == self.max_ts]
        key = max(at_top, key=_sort_key) if at_top else self.max_key
        return TablePosition(self.table, self.max_ts, key, sorted(tail.values(), key=lambda p: (p[1], _sort_key(p[0]))))


def _sort_key(k: str):
    return (0, int(k), "") if k.lstrip("-").isdigit() else (1, 0, k)


def _micros(u: datetime) -> int:
    return int((u - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))


def _int_list_literal(values: list[int]) -> str:
    return "'{" + ",".join(str(int(v)) for v in values) + "}'::bigint[]"


def _read_all(
    conn, lake: Lake, oltp: OltpSettings, positions: Positions, tables: list[str], result: ExtractResult, day: str
) -> None:
    overlap = timedelta(seconds=oltp.overlap_seconds)
    base = bronze_dir(lake)
    for table in tables:
        position = positions.tables[table]
        tracker = _Tracker(table, position, overlap)
        query = _select_sql(oltp, table)
        if position.watermark_ts is not None:
            since = (position.watermark_ts - overlap).strftime("%Y-%m-%d %H:%M:%S.%f")
            from psycopg import sql

            column = sql.Identifier(oltp.tables[table].updated_at).as_string(None)
            query += f" WHERE {column} >= TIMESTAMPTZ '{since}+00'"
        path = base / table / f"ingest_date={day}" / f"{result.extract_id}.parquet"
        rows = copy_to_parquet(conn, query, table, path, oltp.batch_bytes, keep=tracker.keep, seen=tracker.seen)
        result.tables[table] = TableExtract(table, path, tracker.finish(), rows=rows)
        crash_point("oltp.extract.table_written")
    # An order and its lines are one sales unit: read the unchanged companions of changes.
    if all(t in result.tables for t in SALES_TABLES):
        first = positions.tables["orders"].watermark_ts is None and positions.tables["order_lines"].watermark_ts is None
        if not first:
            orders = pq.read_table(result.tables["orders"].path, columns=["order_id"])["order_id"]
            lines = pq.read_table(result.tables["order_lines"].path, columns=["order_id", "order_line_id"])
            changed_orders = set(orders.to_pylist())
            line_orders = set(lines["order_id"].to_pylist())
            changed_lines = lines["order_line_id"].to_pylist()
            from psycopg import sql

            if changed_orders:
                key = sql.Identifier(oltp.tables["order_lines"].columns.get("order_id", "order_id")).as_string(None)
                lkey = sql.Identifier(oltp.tables["order_lines"].key).as_string(None)
                query = (
                    _select_sql(oltp, "order_lines")
                    + f" WHERE {key} = ANY({_int_list_literal(sorted(changed_orders))})"
                    + (f" AND NOT ({lkey} = ANY({_int_list_literal(changed_lines)}))" if changed_lines else "")
                )
                path = base / "order_lines" / f"ingest_date={day}" / f"{result.extract_id}.context.parquet"
                t = result.tables["order_lines"]
                t.context_rows = copy_to_parquet(conn, query, "order_lines", path, oltp.batch_bytes)
                t.context_path = path
            missing = sorted(line_orders - changed_orders)
            if missing:
                okey = sql.Identifier(oltp.tables["orders"].key).as_string(None)
                query = _select_sql(oltp, "orders") + f" WHERE {okey} = ANY({_int_list_literal(missing)})"
                path = base / "orders" / f"ingest_date={day}" / f"{result.extract_id}.context.parquet"
                t = result.tables["orders"]
                t.context_rows = copy_to_parquet(conn, query, "orders", path, oltp.batch_bytes)
                t.context_path = path


def resolve_tables(tables: Iterable[str] | None) -> list[str]:
    """The logical tables to extract, in extraction order (orders and lines together)."""
    if not tables:
        return list(TABLE_ORDER)
    wanted = set()
    for t in tables:
        for part in str(t).split(","):
            part = part.strip()
            if not part:
                continue
            if part not in TABLE_COLUMNS:
                raise UserError(f"unknown table {part!r} for --tables; known: {', '.join(TABLE_ORDER)}")
            wanted.add(part)
    if wanted & set(SALES_TABLES):
        wanted |= set(SALES_TABLES)
    return [t for t in TABLE_ORDER if t in wanted]


def extract(
    lake: Lake,
    settings: Settings,
    positions: Positions,
    tables: list[str],
    dsn: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ExtractResult:
    """Read every changed row of ``tables`` into bronze in one snapshot; retries after a
    lost connection. Positions are not written here (see :func:`write_positions`)."""
    import psycopg

    from saleslake.connections.postgres import PostgresConnectError, redact

    oltp = settings.oltp
    target = dsn or settings.postgres.dsn_for("reader")
    started = time.perf_counter()
    now = datetime.now(UTC)
    seq = positions.next_seq
    # the password the connection used, read by connect() (only then, and only the role's
    # the DSN names), kept here to scrub it out of every message
    secrets: list[str] = []

    def once(attempt: int) -> ExtractResult:
        result = ExtractResult(seq, f"{seq:08d}-{uuid.uuid4().hex[:8]}", now, attempts=attempt)
        try:
            _read_snapshot(lake, settings, positions, tables, target, result, secrets)
        except BaseException:
            _remove_files(result)  # nothing of a failed attempt stays in bronze
            raise
        result.seconds = time.perf_counter() - started
        return result

    attempts = oltp.retries + 1
    try:
        return retry(once, attempts, _connection_lost, backoff=oltp.retry_backoff_seconds, cap=30.0, sleep=sleep)
    except (psycopg.OperationalError, PostgresConnectError, psycopg.errors.InsufficientPrivilege) as exc:
        raise _extract_failure(exc, redact(target), settings, attempts, *secrets) from None


def _read_snapshot(
    lake: Lake,
    settings: Settings,
    positions: Positions,
    tables: list[str],
    target: str,
    result: ExtractResult,
    secrets: list[str],
) -> None:
    """Read the changes of ``tables`` into ``result`` in one read-only repeatable-read
    transaction: every table from the same snapshot of the shop, so an order and its lines
    agree. The password the connection used goes into ``secrets``."""
    import psycopg

    from saleslake.connections.postgres import connect, redact

    conn = connect(settings.postgres, "reader", target, read_only=True, application_name="saleslake ingest postgres")
    if conn.info.password and conn.info.password not in secrets:
        secrets.append(conn.info.password)
    try:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        conn.execute("SET TimeZone = 'UTC'")
        check_source(conn, settings.oltp, tables, redact(target))
        _read_all(conn, lake, settings.oltp, positions, tables, result, result.extracted_at.strftime("%Y-%m-%d"))
        conn.rollback()  # read only: nothing to commit
    finally:
        conn.close()


def _connection_lost(exc: BaseException) -> bool:
    """Whether another attempt may succeed: the connection failed or dropped. A statement
    or lock timeout would only time out again."""
    import psycopg

    from saleslake.connections.postgres import PostgresConnectError

    timeouts = (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable)
    return isinstance(exc, (psycopg.OperationalError, PostgresConnectError)) and not isinstance(exc, timeouts)


def _extract_failure(exc: Exception, where: str, settings: Settings, attempts: int, *secrets: str) -> SaleslakeError:
    """The one line for an extract that failed for good: which server (``where``, the
    redacted DSN), what happened and what to do, with ``secrets`` scrubbed out."""
    import psycopg

    from saleslake.connections.postgres import scrub

    pg = settings.postgres
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return TransientError(
            f"extract from {where} hit the statement timeout ({pg.statement_timeout_seconds:g} s): "
            f"{scrub(str(exc), *secrets)}"
        )
    if isinstance(exc, psycopg.errors.LockNotAvailable):
        return TransientError(
            f"extract from {where} waited longer than the lock timeout: another session "
            "holds a lock on a source table (DDL?); retry later"
        )
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return OltpSourceError(f"the reader role may not read a source table in {where}: {scrub(str(exc), *secrets)}")
    return TransientError(f"extract from {where} failed after {attempts} attempt(s): {scrub(str(exc), *secrets)}")


def _remove_files(result: ExtractResult) -> None:
    for t in result.tables.values():
        for p in (t.path, t.context_path):
            if p is not None and p.exists():
                p.unlink()


def position_rows(result: ExtractResult, positions: Positions) -> list[dict]:
    """Rows of ``system/oltp_positions`` for this extract: every table (unextracted ones
    carry their committed position forward)."""
    rows = []
    for name in TABLE_ORDER:
        t = result.tables.get(name)
        p = t.position if t is not None else positions.tables[name]
        rows.append(
            {
                "extract_seq": result.seq,
                "extract_id": result.extract_id,
                "table_name": name,
                "watermark_ts": p.watermark_ts,
                "watermark_key": p.watermark_key,
                "tail": [{"key": k, "updated_at": u} for k, u in p.tail],
                "rows": t.rows if t else 0,
                "context_rows": t.context_rows if t else 0,
                "bronze_uri": str(t.path) if t and t.path else None,
                "context_uri": str(t.context_path) if t and t.context_path else None,
                "extracted_at": result.extracted_at,
            }
        )
    return rows


__all__ = [
    "APP_ID",
    "TABLE_ORDER",
    "ExtractResult",
    "OltpSourceError",
    "Positions",
    "committed_seq",
    "extract",
    "position_rows",
    "read_positions",
    "resolve_tables",
    "write_positions",
]
