"""Publish adapter: the latest gold release into a PostgreSQL warehouse (star schema).

``saleslake publish postgres [--dsn DSN] [--schema S]`` / :func:`publish_postgres`.

- **Source**: the latest gold release (``system/gold_releases``), each table read at the
  release's Delta version through DuckDB, streamed as Arrow record batches (bounded memory).
- **Target**: ``settings.postgres`` warehouse database as the warehouse role, schema
  ``postgres.warehouse_schema`` (default ``gold``). Primary keys on the surrogate keys
  (fact: ``line_key``; agg: ``(date_key, region, category)``), foreign keys fact → dims
  (``DEFERRABLE INITIALLY DEFERRED``: checked at commit; the dims hold the -1 unknown
  members), BI indexes (fact on order_date_key, customer_sk, product_sk, store_sk; agg on
  date_key). Types follow gold: ``numeric(18,4)`` money, ``date``, ``bigint`` surrogate
  keys, ``integer`` date keys, ``boolean``.
- **Versioned DDL**: :data:`MIGRATIONS` is an ordered list of SQL steps; the applied ones
  are recorded in ``<schema>.saleslake_schema_version``; pending ones run in one
  transaction. A change is a new step (``ALTER``), never a drop of data.
- **Atomic, incremental publish**: changed rows are bulk loaded (``COPY ... (FORMAT csv)``
  from Arrow via ``pyarrow.csv``; measured faster than binary COPY with ``write_row``) into
  temporary staging tables, then ONE transaction merges them into the target tables and
  appends a row to ``<schema>.saleslake_publish_log`` (release id, Delta versions, counts).
  Readers see the old or the new gold, never a mix. A table whose Delta version equals the
  one last published from the same lake is skipped; the fact is compared row by row
  through a content hash (``fact_sales._row_hash``, a 63-bit DuckDB hash of the published
  columns): only inserted or changed rows are sent and written, removed ones deleted. A
  publish of the release already published changes nothing (no log row either).
- **Bulk publish** (a first load, or changes above :data:`BULK_FACT_ROWS` and
  :data:`BULK_FACT_SHARE` of the warehouse fact): the next fact is built beside the live one
  (``<schema>.saleslake_next_fact_sales``: COPY, the unchanged rows copied on the server, its
  keys and indexes built two sessions at a time), and the swap drops the live fact and
  renames the next one into place with the same key, index and constraint names, grants and
  comment, validating the foreign keys against the new dimensions. A live fact with anything
  the replacement would not carry over (views, triggers, extra columns, settings,
  publications...: :func:`_bulk_mode`) is rewritten in place instead (keys and indexes
  dropped and rebuilt); one referenced by another table's foreign key is upserted. A failed
  attempt drops its staged tables. Caveat of
  any table swap: a REPEATABLE READ transaction that began before the swap and first reads
  the fact after it sees the new table's rows only if they were committed before its
  snapshot; READ COMMITTED readers (the default, and every BI tool's) see old or new gold.
- **Faults**: lock waits are bounded by ``postgres.lock_timeout_seconds``; connection loss,
  lock timeouts, deadlocks and serialization failures are retried with backoff
  (``postgres.publish_attempts``); a failed attempt rolls back, leaving the previous gold.
  A lock timeout in the swap (a reader's open transaction on a table the swap changes)
  retries the swap transaction alone, as the staged rows are already committed; if the
  lock outlasts every swap attempt the publish stops with one line saying so.
  The password is never printed: errors go through :mod:`saleslake.connections.postgres`'s redaction.
"""

from __future__ import annotations

import io
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv

from saleslake.connections.duckdb import session
from saleslake.connections.postgres import connect, redact, scrub
from saleslake.crashpoints import crash_point
from saleslake.dbapi import one_row
from saleslake.errors import TransientError, UserError
from saleslake.gold.release import releases
from saleslake.lake import Lake, read_delta, snapshot_view_sql
from saleslake.retry import retry

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

    from saleslake.config import PostgresSettings, Settings

BATCH_ROWS = 100_000
FACT = "fact_sales"
HASH_COLUMN = "_row_hash"
DIMENSIONS = ("dim_date", "dim_customer", "dim_product", "dim_store", "dim_geography")
#: Load order (dimensions first) and primary key of every published table.
TABLES: dict[str, tuple[str, ...]] = {
    "dim_date": ("date_key",),
    "dim_customer": ("customer_sk",),
    "dim_product": ("product_sk",),
    "dim_store": ("store_sk",),
    "dim_geography": ("geography_sk",),
    "fact_sales": ("line_key",),
    "agg_sales_daily": ("date_key", "region", "category"),
}
#: Above this many fact rows to write, and this share of the rows the warehouse fact holds,
#: the fact's keys, indexes and foreign keys are dropped and rebuilt inside the swap
#: transaction instead of maintained row by row. (Rebuilding costs the whole table: on a
#: 10M-row fact, 2 % of changes took 33 s that way.)
BULK_FACT_ROWS = 50_000
BULK_FACT_SHARE = 0.25
#: The fact's staging table: unlogged, in the target schema, filled by COPY_SESSIONS
#: sessions in parallel (PostgreSQL parses COPY on one core per session).
FACT_STAGE = "{s}.saleslake_stage_fact_sales"
COPY_SESSIONS = 2
#: A bulk publish builds the next fact beside the live one (logged: measured 3 s more for
#: COPY of 10M rows, where copying a staged table into the fact cost 14-17 s), with its
#: keys and indexes built by COPY_SESSIONS sessions at once, then renames it into place.
FACT_NEXT = "saleslake_next_fact_sales"
NEXT_INDEX = "saleslake_next_{n}"
#: Sort memory of a fact index build (10M keys sort in memory; 256MB spilled).
MAINTENANCE_WORK_MEM = "512MB"

#: (column, referenced table, referenced column) of the fact's foreign keys.
FACT_FOREIGN_KEYS = (
    ("order_date_key", "dim_date", "date_key"),
    ("ship_date_key", "dim_date", "date_key"),
    ("customer_sk", "dim_customer", "customer_sk"),
    ("product_sk", "dim_product", "product_sk"),
    ("store_sk", "dim_store", "store_sk"),
    ("geography_sk", "dim_geography", "geography_sk"),
)


#: Versioned DDL: (version, description, statements); ``{s}`` is the quoted schema.
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "star schema with primary and foreign keys, publish log",
        [
            """CREATE TABLE IF NOT EXISTS {s}.dim_date (
            date_key integer PRIMARY KEY, date date, year integer, quarter integer, month integer,
            month_name text, day_of_month integer, day_of_week integer, day_name text,
            week_of_year integer, is_weekend boolean)""",
            """CREATE TABLE IF NOT EXISTS {s}.dim_customer (
            customer_sk bigint PRIMARY KEY, customer_id text, customer_name text, segment text,
            valid_from date, valid_to date, is_current boolean, version integer)""",
            """CREATE TABLE IF NOT EXISTS {s}.dim_product (
            product_sk bigint PRIMARY KEY, product_id text, product_name text, category text,
            sub_category text, valid_from date, valid_to date, is_current boolean, version integer)""",
            """CREATE TABLE IF NOT EXISTS {s}.dim_store (
            store_sk bigint PRIMARY KEY, store_id text, store_name text, channel text, city text,
            state text, country text, region text, market text, valid_from date, valid_to date,
            is_current boolean, version integer)""",
            """CREATE TABLE IF NOT EXISTS {s}.dim_geography (
            geography_sk bigint PRIMARY KEY, city text, state text, country text, postal_code text,
            region text, market text)""",
            """CREATE TABLE IF NOT EXISTS {s}.fact_sales (
            line_key text COLLATE "C" PRIMARY KEY, order_id text, line_id text,
            order_date_key integer NOT NULL, ship_date_key integer NOT NULL,
            customer_sk bigint NOT NULL, product_sk bigint NOT NULL, store_sk bigint NOT NULL,
            geography_sk bigint NOT NULL, source_system text, ship_mode text, order_priority text,
            quantity bigint, unit_price numeric(18,4), sales numeric(18,4), discount numeric(9,4),
            discount_amount numeric(18,4), net_sales numeric(18,4), profit numeric(18,4),
            profit_margin double precision, shipping_cost numeric(18,4), tax_amount numeric(18,4),
            is_suspected_fraud boolean, is_outlier boolean, dq_score integer)""",
            """CREATE TABLE IF NOT EXISTS {s}.agg_sales_daily (
            date_key integer NOT NULL, region text NOT NULL, category text NOT NULL,
            orders bigint, lines bigint, quantity bigint, sales numeric(38,4), net_sales numeric(38,4),
            profit numeric(38,4), tax_amount numeric(38,4), suspected_fraud_lines bigint,
            PRIMARY KEY (date_key, region, category))""",
            """CREATE TABLE IF NOT EXISTS {s}.saleslake_publish_log (
            publish_id bigserial PRIMARY KEY, release_id text NOT NULL, run_id text, lake text,
            published_at timestamptz NOT NULL DEFAULT now(), schema_version integer,
            table_versions jsonb NOT NULL, rows_written jsonb NOT NULL, seconds double precision)""",
        ],
    ),
    (
        2,
        "fact row hash (incremental publish), foreign keys, BI indexes",
        [
            "ALTER TABLE {s}.fact_sales ADD COLUMN IF NOT EXISTS _row_hash bigint",
            *[
                f"""DO $$ BEGIN
                IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'fact_sales_{col}_fkey'
                               AND conrelid = '{{s}}.fact_sales'::regclass) THEN
                    ALTER TABLE {{s}}.fact_sales ADD CONSTRAINT fact_sales_{col}_fkey FOREIGN KEY ({col})
                    REFERENCES {{s}}.{dim} ({key}) DEFERRABLE INITIALLY DEFERRED;
                END IF; END $$"""
                for col, dim, key in FACT_FOREIGN_KEYS
            ],
            "CREATE INDEX IF NOT EXISTS fact_sales_order_date_key_idx ON {s}.fact_sales (order_date_key)",
            "CREATE INDEX IF NOT EXISTS fact_sales_customer_sk_idx ON {s}.fact_sales (customer_sk)",
            "CREATE INDEX IF NOT EXISTS fact_sales_product_sk_idx ON {s}.fact_sales (product_sk)",
            "CREATE INDEX IF NOT EXISTS fact_sales_store_sk_idx ON {s}.fact_sales (store_sk)",
            "CREATE INDEX IF NOT EXISTS agg_sales_daily_date_key_idx ON {s}.agg_sales_daily (date_key)",
        ],
    ),
    (
        3,
        "fact fraud reasons: the line and history fraud rules' codes (CONTRACT §7)",
        ["ALTER TABLE {s}.fact_sales ADD COLUMN IF NOT EXISTS fraud_reasons text"],
    ),
]
LATEST_VERSION = MIGRATIONS[-1][0]


@dataclass
class TableLoad:
    rows: int = 0  # rows in the release's table
    sent: int = 0  # rows copied to the server (staging)
    written: int = 0  # rows inserted or changed in the target
    deleted: int = 0  # rows removed from the target
    skipped: bool = False  # Delta version already published


@dataclass
class PostgresPublication:
    release_id: str
    dsn: str  # redacted
    schema: str
    schema_version: int = 0
    migrations_applied: list[int] = field(default_factory=list)
    skipped: bool = False  # the release was already published: nothing changed
    tables: dict[str, TableLoad] = field(default_factory=dict)
    attempts: int = 1  # publish attempts (each stages again)
    swap_attempts: int = 1  # swap transactions in the last attempt (lock timeouts retry only the swap)
    seconds: float = 0.0
    publish_id: int | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step

    @property
    def rows_sent(self) -> int:
        return sum(t.sent for t in self.tables.values())

    @property
    def fact_written(self) -> int:
        return self.tables[FACT].written if FACT in self.tables else 0

    @property
    def fact_deleted(self) -> int:
        return self.tables[FACT].deleted if FACT in self.tables else 0


class SwapLocked(TransientError):
    """The swap transaction met a lock timeout on every one of its attempts."""


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _check_schema(schema: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", schema or ""):
        raise UserError(f"--schema must be a plain PostgreSQL identifier (letters, digits, _), not {schema!r}")
    return schema


# -- migrations -----------------------------------------------------------------------------


def schema_version(conn: psycopg.Connection, schema: str) -> int:
    """The applied schema version (0: none)."""
    row = conn.execute("SELECT to_regclass(%s)", [f"{quote_ident(schema)}.saleslake_schema_version"]).fetchone()
    if row is None or row[0] is None:
        return 0
    (version,) = one_row(
        conn.execute(f"SELECT coalesce(max(version), 0) FROM {quote_ident(schema)}.saleslake_schema_version")
    )
    return int(version)


def migrate(conn: psycopg.Connection, schema: str, target: int | None = None) -> list[int]:
    """Apply the pending :data:`MIGRATIONS` up to ``target`` (default: all) in one
    transaction; returns the versions applied. Concurrent callers serialize on an
    advisory lock."""
    s = quote_ident(schema)
    target = LATEST_VERSION if target is None else target
    applied: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"saleslake.migrate.{schema}"])
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {s}.saleslake_schema_version (version integer PRIMARY KEY, "
            "description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = schema_version(conn, schema)
        for version, description, statements in MIGRATIONS:
            if version <= current or version > target:
                continue
            for statement in statements:
                conn.execute(statement.replace("{s}", s))
            conn.execute(
                f"INSERT INTO {s}.saleslake_schema_version (version, description) VALUES (%s, %s)",
                [version, description],
            )
            applied.append(version)
    return applied


# -- source ---------------------------------------------------------------------------------


def _release(lake: Lake) -> dict:
    rows = releases(lake)
    if not rows:
        raise UserError(f"no gold release in {lake.home} yet: run `saleslake run` first")
    return rows[-1]


def _target_columns(conn: psycopg.Connection, schema: str, table: str) -> list[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "ORDER BY ordinal_position",
        [schema, table],
    ).fetchall()
    return [r[0] for r in rows]


def _copy_arrow(conn: psycopg.Connection, table: str, columns: list[str], reader: pa.RecordBatchReader) -> int:
    """COPY the batches of ``reader`` (columns in order) into ``table``; returns the row count.

    CSV from pyarrow quotes every string and writes nulls unquoted and empty, which is
    exactly PostgreSQL's CSV NULL convention: any text (quotes, semicolons, newlines,
    ``'); DROP TABLE ...``) arrives unchanged.
    """
    options = pacsv.WriteOptions(include_header=False, batch_size=BATCH_ROWS)
    column_list = ", ".join(quote_ident(c) for c in columns)
    rows = 0
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({column_list}) FROM STDIN (FORMAT csv)") as copy:
        for batch in reader:
            if batch.num_rows == 0:
                continue
            buffer = io.BytesIO()
            pacsv.write_csv(batch, buffer, options)
            copy.write(buffer.getbuffer())
            rows += batch.num_rows
    return rows


def _hash_sql(columns: list[str]) -> str:
    return "CAST(hash(" + ", ".join(quote_ident(c) for c in columns) + ") >> 1 AS BIGINT)"


# -- publish --------------------------------------------------------------------------------


def publish_postgres(
    settings: Settings, dsn: str | None = None, schema: str | None = None, run_id: str | None = None
) -> PostgresPublication:
    """Publish the latest gold release of ``settings.home`` into the warehouse (see module doc)."""
    import psycopg

    lake = Lake(settings.home, settings.storage)
    pg = settings.postgres
    schema = _check_schema(schema or pg.warehouse_schema)
    release = _release(lake)
    target = dsn or pg.dsn_for("warehouse")
    where = redact(target)
    secret = pg.password("warehouse")
    attempts = pg.publish_attempts

    def once(attempt: int) -> PostgresPublication:
        result = _publish_once(settings, lake, release, target, schema, run_id)
        result.attempts = attempt
        return result

    def transient(exc: BaseException) -> bool:  # connection lost, lock/statement timeout, deadlock
        # a SwapLocked swap already retried: staging again would not help
        return isinstance(exc, (TransientError, psycopg.OperationalError)) and not isinstance(exc, SwapLocked)

    try:
        return retry(once, attempts, transient, backoff=0.5, cap=8.0)
    except SwapLocked as exc:
        raise TransientError(
            f"publishing gold to PostgreSQL at {where} failed: a table of the warehouse stayed locked by another "
            f"session through {pg.publish_attempts} swap attempt(s) ({scrub(str(exc), secret)}); "
            "the warehouse still holds the previous gold"
        ) from None
    except (TransientError, psycopg.OperationalError) as exc:
        raise TransientError(
            f"publishing gold to PostgreSQL at {where} failed after {attempts} attempt(s): "
            f"{scrub(str(exc), secret)}; the warehouse still holds the previous gold"
        ) from None
    except psycopg.Error as exc:
        raise UserError(f"publishing gold to PostgreSQL at {where} failed: {scrub(str(exc), secret)}") from None


@dataclass
class _Stopwatch:
    """Seconds per step of a publish into ``timings``: each lap counts from the previous
    lap (or restart), so the steps of an attempt do not overlap."""

    timings: dict[str, float]
    since: float = field(default_factory=time.perf_counter)

    def restart(self) -> None:
        self.since = time.perf_counter()

    def lap(self, step: str) -> None:
        self.timings[step] = round(time.perf_counter() - self.since, 3)
        self.since = time.perf_counter()


@dataclass(frozen=True)
class _Attempt:
    """What one publish attempt publishes, where and for which run: the inputs every phase
    of the attempt (stage, swap, log, cleanup) reads."""

    settings: Settings
    lake: Lake
    release: dict
    target: str  # the warehouse DSN (with its password: never printed)
    schema: str
    run_id: str | None
    started: float = field(default_factory=time.perf_counter)

    @property
    def quoted_schema(self) -> str:
        return quote_ident(self.schema)

    @property
    def versions(self) -> dict[str, int]:
        """The Delta version of every gold table in the release."""
        return self.release["table_versions"]

    def session(self) -> psycopg.Connection:
        """Another warehouse session (the COPY and index builders run beside the main one)."""
        return _session(self.settings.postgres, self.target)


@dataclass
class _Staged:
    """What the stage phase left for the swap to merge."""

    columns: dict[str, list[str]] = field(default_factory=dict)  # staged table (load order) -> its columns
    fact: FactStage | None = None  # how the fact's changes were staged; None: the fact is unchanged


def _publish_once(
    settings: Settings, lake: Lake, release: dict, target: str, schema: str, run_id: str | None
) -> PostgresPublication:
    """One attempt: stage the changed rows (no target lock held), swap them in with one
    transaction, drop the stages. An attempt that fails drops what it staged (so a retry
    or the next publish starts clean) and leaves the previous gold in place."""
    attempt = _Attempt(settings, lake, release, target, schema, run_id)
    missing = [t for t in TABLES if t not in attempt.versions]
    if missing:
        raise UserError(f"the latest gold release lacks {', '.join(missing)}: run `saleslake rebuild gold`")
    result = PostgresPublication(release_id=release["release_id"], dsn=redact(target), schema=schema)
    conn = attempt.session()
    duck: duckdb.DuckDBPyConnection | None = None
    staging = False  # whether this attempt may have left staged tables behind
    try:
        _lock_and_migrate(conn, schema, result)
        published = _published_versions(conn, attempt, result)
        if published is None:
            return _already_published(conn, attempt, result)
        duck = session(settings, lake)
        _create_release_views(duck, attempt)
        staging = True
        staged = _stage_tables(conn, duck, attempt, published, result)
        crash_point("publish_postgres.after_staging")
        watch = _Stopwatch(result.timings)
        _swap(conn, attempt, staged, result, watch)
        crash_point("publish_postgres.after_commit")
        _drop_stages(conn, attempt.quoted_schema, staged)
        staging = False
        watch.lap("swap_commit")
    finally:
        if duck is not None:
            duck.close()
        conn.close()  # releases the publish lock
        if staging:
            _drop_leftovers(settings.postgres, target, schema)
    result.seconds = time.perf_counter() - attempt.started
    return result


def _lock_and_migrate(conn: psycopg.Connection, schema: str, result: PostgresPublication) -> None:
    """Take the schema's publish lock (one publish at a time per schema; held until the
    session closes), then bring the schema to :data:`LATEST_VERSION`."""
    conn.execute("SELECT pg_advisory_lock(hashtext(%s))", [f"saleslake.publish.{schema}"])
    conn.commit()
    result.migrations_applied = migrate(conn, schema)
    result.schema_version = schema_version(conn, schema)


def _published_versions(
    conn: psycopg.Connection, attempt: _Attempt, result: PostgresPublication
) -> dict[str, int] | None:
    """The Delta version of every table the last publish sent from this lake (``{}`` when
    the last publish came from another lake, or none was made: every table is sent), or
    None when the last publish was this very release on this schema version (nothing to do)."""
    last = conn.execute(
        f"SELECT release_id, lake, table_versions, schema_version FROM {attempt.quoted_schema}.saleslake_publish_log "
        "ORDER BY publish_id DESC LIMIT 1"
    ).fetchone() or (None, None, None, None)  # never published: no lake is the same
    conn.commit()
    same_lake = last[1] == str(attempt.lake.home)
    if (
        same_lake
        and last[0] == attempt.release["release_id"]
        and last[3] == result.schema_version
        and not result.migrations_applied
    ):
        return None
    return {k: int(v) for k, v in (last[2] or {}).items()} if same_lake else {}


def _already_published(conn: psycopg.Connection, attempt: _Attempt, result: PostgresPublication) -> PostgresPublication:
    """The result of publishing a release the warehouse already holds: nothing changed."""
    # a publish killed between its swap's commit and its cleanup left the staged fact behind
    conn.execute(f"DROP TABLE IF EXISTS {FACT_STAGE.format(s=attempt.quoted_schema)}")
    conn.commit()
    result.skipped = True
    result.tables = {name: TableLoad(skipped=True) for name in TABLES}
    result.seconds = time.perf_counter() - attempt.started
    return result


def _create_release_views(duck: duckdb.DuckDBPyConnection, attempt: _Attempt) -> None:
    """One DuckDB view per gold table at the release's Delta version: the publish reads the
    release, never a table a later gold build has moved on."""
    for name in TABLES:
        table = read_delta(attempt.lake.gold_table(name), attempt.versions[name])
        duck.execute(f"CREATE VIEW {quote_ident(name)} AS {snapshot_view_sql(table)}")


def _stage_table(
    conn: psycopg.Connection, duck: duckdb.DuckDBPyConnection, s: str, name: str, columns: list[str]
) -> int:
    """COPY a whole dimension (or the aggregate) into temporary ``stage_<name>``; the swap
    merges it, touching only the rows that differ. Returns the rows sent."""
    stage = quote_ident(f"stage_{name}")
    conn.execute(f"DROP TABLE IF EXISTS {stage}")
    conn.execute(f"CREATE TEMP TABLE {stage} (LIKE {s}.{quote_ident(name)})")
    select = ", ".join(quote_ident(c) for c in columns)
    reader = duck.sql(f"SELECT {select} FROM {quote_ident(name)}").to_arrow_reader(BATCH_ROWS)
    sent = _copy_arrow(conn, stage, columns, reader)
    conn.execute(f"ANALYZE {stage}")
    return sent


def _stage_tables(
    conn: psycopg.Connection,
    duck: duckdb.DuckDBPyConnection,
    attempt: _Attempt,
    published: dict[str, int],
    result: PostgresPublication,
) -> _Staged:
    """1. stage: temporary tables in this session, loaded by COPY (no target locks held).
    A table whose Delta version was already published from this lake is skipped (unless a
    migration ran); the fact stages only its changes (:func:`_stage_fact_changes`)."""
    staged = _Staged()
    watch = _Stopwatch(result.timings)
    for name in TABLES:
        load = result.tables.setdefault(name, TableLoad())
        watch.restart()
        (load.rows,) = duck.execute(f"SELECT count(*) FROM {quote_ident(name)}").fetchall()[0]
        if published.get(name) == attempt.versions[name] and not result.migrations_applied:
            load.skipped = True
            continue
        gold_columns = set(duck.sql(f"SELECT * FROM {quote_ident(name)} LIMIT 0").columns)
        columns = [c for c in _target_columns(conn, attempt.schema, name) if c in gold_columns]
        if name == FACT:
            staged.fact = _stage_fact_changes(conn, duck, attempt.lake, attempt.schema, columns, attempt.session)
            load.sent = staged.fact.sent
            result.timings.update(staged.fact.timings)
            staged.columns[name] = [*columns, HASH_COLUMN]
        else:
            load.sent = _stage_table(conn, duck, attempt.quoted_schema, name, columns)
            staged.columns[name] = columns
        watch.lap(f"stage_{name}")
    conn.commit()
    return staged


def _swap(
    conn: psycopg.Connection, attempt: _Attempt, staged: _Staged, result: PostgresPublication, watch: _Stopwatch
) -> None:
    """2. swap: one transaction makes the new gold visible at once. A lock timeout (a
    reader holding a table the swap must change) retries the swap alone, with backoff:
    the staged rows stay (they were committed before it). :class:`SwapLocked` when the
    lock outlasts every attempt."""
    import psycopg

    pg = attempt.settings.postgres

    def swap_once(swap_attempt: int) -> None:
        result.swap_attempts = swap_attempt
        watch.restart()
        with conn.transaction():
            conn.execute(f"SET LOCAL lock_timeout = {int(pg.lock_timeout_seconds * 1000)}")
            _merge_staged(conn, attempt.quoted_schema, staged, result, watch)
            _log_publish(conn, attempt, result)
            crash_point("publish_postgres.before_commit")

    def lock_timeout(exc: BaseException) -> bool:
        return isinstance(exc, psycopg.errors.LockNotAvailable)

    try:
        retry(swap_once, pg.publish_attempts, lock_timeout, backoff=0.5, cap=8.0)
    except psycopg.errors.LockNotAvailable as exc:
        raise SwapLocked(str(exc)) from None


def _merge_staged(
    conn: psycopg.Connection, s: str, staged: _Staged, result: PostgresPublication, watch: _Stopwatch
) -> None:
    """Inside the swap: merge every staged table into its target, dimensions first (the
    fact's foreign keys point at them); a bulk fact's foreign keys come off before."""
    foreign: list[tuple[str, str]] = []
    if staged.fact is not None and staged.fact.mode != "upsert":
        foreign = _detach_fact(conn, s, staged.fact)
        watch.lap("detach_fact_sales")
    for name, columns in staged.columns.items():
        load = result.tables[name]
        if name == FACT and staged.fact is not None:
            load.written, load.deleted = _merge_fact(conn, s, columns, staged.fact, foreign)
        else:
            load.written, load.deleted = _merge_table(conn, s, name, columns)
        watch.lap(f"merge_{name}")


def _log_publish(conn: psycopg.Connection, attempt: _Attempt, result: PostgresPublication) -> None:
    """Inside the swap: append the publish log row (release, Delta versions, counts), so
    the log says exactly what the warehouse holds once the swap commits."""
    written = {
        n: {"written": t.written, "deleted": t.deleted, "sent": t.sent, "skipped": t.skipped}
        for n, t in result.tables.items()
    }
    result.seconds = time.perf_counter() - attempt.started
    release = attempt.release
    (result.publish_id,) = one_row(
        conn.execute(
            f"INSERT INTO {attempt.quoted_schema}.saleslake_publish_log (release_id, run_id, lake, schema_version, "
            "table_versions, rows_written, seconds) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING publish_id",
            [
                release["release_id"],
                attempt.run_id or release.get("run_id"),
                str(attempt.lake.home),
                result.schema_version,
                json.dumps(attempt.versions),
                json.dumps(written),
                result.seconds,
            ],
        )
    )


def _drop_stages(conn: psycopg.Connection, s: str, staged: _Staged) -> None:
    """After the swap: drop the staged tables (unlinking their files holds no target lock)."""
    for name in staged.columns:
        stage = FACT_STAGE.format(s=s) if name == FACT else quote_ident(f"stage_{name}")
        conn.execute(f"DROP TABLE IF EXISTS {stage}")
    conn.commit()


def _session(pg: PostgresSettings, target: str) -> psycopg.Connection:
    """A warehouse session of the publish (the main one, the COPY and index builders)."""
    return connect(pg, "warehouse", target, application_name=f"{pg.application_name} publish")


def _drop_leftovers(pg: PostgresSettings, target: str, schema: str) -> None:
    """After a failed attempt, drop the fact's staged tables (the next fact is a full copy
    of the fact with its indexes) unless another publish holds the schema's publish lock
    by now. Best effort: the next publish drops them anyway."""
    s = quote_ident(schema)
    try:
        with _session(pg, target) as other:
            other.autocommit = True
            (mine,) = one_row(
                other.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [f"saleslake.publish.{schema}"])
            )
            if mine:
                other.execute(f"DROP TABLE IF EXISTS {s}.{FACT_NEXT}")
                other.execute(f"DROP TABLE IF EXISTS {FACT_STAGE.format(s=s)}")
    except Exception:
        pass


@dataclass
class FactStage:
    """How the fact's changes were staged, and so how the swap applies them.

    ``mode``: ``upsert`` (few changes: staged unlogged, upserted row by row), ``next`` (bulk:
    the whole next fact built beside the live one with its keys and indexes, renamed into
    place), ``in_place`` (bulk, but other objects depend on the live table so it cannot be
    replaced: its keys and indexes are dropped and rebuilt around the insert)."""

    mode: str
    sent: int  # rows copied to the server: changed facts + deleted keys
    deletes: int  # line keys the warehouse has and gold lost
    indexes: list[tuple[str, str, str | None, str | None]] = field(default_factory=list)
    # (next index name, live index name, constraint name, constraint type) for mode "next"
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step of the staging


@dataclass(frozen=True)
class _FactDiff:
    """How gold's fact differs from the warehouse's, as :func:`_compare_fact` found it. The
    keys themselves wait in DuckDB tables ``published``, ``deleted`` (and ``changed``)."""

    published_rows: int  # facts the warehouse holds
    changes: int  # gold facts that are new or differ
    deletes: int  # warehouse facts gold no longer has
    only_changed: str  # SQL condition keeping the changed gold facts ("": every one is a change)


def _stage_fact_changes(
    conn: psycopg.Connection,
    duck: duckdb.DuckDBPyConnection,
    lake: Lake,
    schema: str,
    columns: list[str],
    session: Callable[[], psycopg.Connection],
) -> FactStage:
    """Stage the gold facts that are new or differ (by row hash) from the warehouse's, and
    the line keys the warehouse has but gold lost (``stage_fact_deletes``, this session).

    Few changes go to the unlogged :data:`FACT_STAGE`. Many (more than
    :data:`BULK_FACT_ROWS` and :data:`BULK_FACT_SHARE` of the warehouse fact) go to
    :data:`FACT_NEXT`, which then also receives the unchanged rows and gets the live
    table's keys and indexes, so the swap renames it into place and validates its foreign
    keys (see :func:`_detach_fact`, :func:`_merge_fact`).
    The COPY runs in ``COPY_SESSIONS`` sessions, each a share of the line keys."""
    s = quote_ident(schema)
    fact = f"{s}.fact_sales"
    timings: dict[str, float] = {}
    watch = _Stopwatch(timings)
    diff = _compare_fact(conn, duck, lake, fact, columns)
    watch.lap("stage_fact_sales_compare")
    mode = _fact_stage_mode(conn, fact, columns, diff)
    stage = _create_fact_stage(conn, s, fact, mode)
    sent = _copy_fact_changes(duck, stage, columns, diff.only_changed, session)
    sent += _stage_fact_deletes(conn, duck)
    duck.execute("DROP TABLE published; DROP TABLE deleted; DROP TABLE IF EXISTS changed")
    staged = FactStage(mode=mode, sent=sent, deletes=diff.deletes, timings=timings)
    watch.lap("stage_fact_sales_copy")
    if mode == "next":
        if diff.published_rows:  # the unchanged rows, copied on the server
            _copy_unchanged_facts(conn, stage, fact, columns)
        conn.commit()
        watch.lap("stage_fact_sales_unchanged")
        staged.indexes = _build_next_indexes(conn, schema, session)
        watch.lap("stage_fact_sales_indexes")
    conn.execute(f"ANALYZE {stage}")
    conn.commit()
    return staged


def _compare_fact(
    conn: psycopg.Connection, duck: duckdb.DuckDBPyConnection, lake: Lake, fact: str, columns: list[str]
) -> _FactDiff:
    """Compare gold's fact with the warehouse's by (line key, row hash) in DuckDB: only the
    changes are sent, and their count decides between an upsert and a bulk publish."""
    published_rows = _published_hashes(conn, duck, lake, fact)
    # The changed keys once (a plain table: the sessions' cursors share it), then each
    # session reads its share of them: the comparison is not repeated per session.
    only_changed = ""  # an empty warehouse: every gold fact is a change
    if published_rows:
        # An ANTI JOIN on (key, hash): a NOT EXISTS with the hash in its condition ran 4x slower
        duck.execute(
            f"CREATE OR REPLACE TABLE changed AS SELECT line_key FROM (SELECT line_key, {_hash_sql(columns)} AS h "
            f"FROM {FACT}) g ANTI JOIN published p USING (line_key, h)"
        )
        only_changed = "AND line_key IN (SELECT line_key FROM changed)"
        (changes,) = duck.execute("SELECT count(*) FROM changed").fetchall()[0]
    else:
        (changes,) = duck.execute(f"SELECT count(*) FROM {FACT}").fetchall()[0]
    duck.execute(
        f"CREATE OR REPLACE TABLE deleted AS SELECT line_key FROM published ANTI JOIN "
        f"(SELECT line_key FROM {FACT}) g USING (line_key)"
    )
    (deletes,) = duck.execute("SELECT count(*) FROM deleted").fetchall()[0]
    return _FactDiff(published_rows, int(changes), int(deletes), only_changed)


def _fact_stage_mode(conn: psycopg.Connection, fact: str, columns: list[str], diff: _FactDiff) -> str:
    """``upsert`` for few changes; for many (see :data:`BULK_FACT_ROWS`), the bulk mode the
    live fact allows (:func:`_bulk_mode`)."""
    changed = diff.changes + diff.deletes
    bulk = changed > BULK_FACT_ROWS and changed > BULK_FACT_SHARE * diff.published_rows
    return _bulk_mode(conn, fact, columns) if bulk else "upsert"


def _create_fact_stage(conn: psycopg.Connection, s: str, fact: str, mode: str) -> str:
    """Create the empty table the fact's changes are copied into, after dropping what an
    earlier attempt left; returns its name. ``next`` makes a logged copy of the fact's
    shape (it becomes the fact), the others an unlogged staging table."""
    stage = f"{s}.{FACT_NEXT}" if mode == "next" else FACT_STAGE.format(s=s)
    conn.execute(f"DROP TABLE IF EXISTS {FACT_STAGE.format(s=s)}")
    conn.execute(f"DROP TABLE IF EXISTS {s}.{FACT_NEXT}")
    if mode == "next":
        conn.execute(f"CREATE TABLE {stage} (LIKE {fact} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)")
    else:
        conn.execute(f"CREATE UNLOGGED TABLE {stage} (LIKE {fact})")
    conn.commit()
    return stage


def _copy_fact_changes(
    duck: duckdb.DuckDBPyConnection,
    stage: str,
    columns: list[str],
    only_changed: str,
    session: Callable[[], psycopg.Connection],
) -> int:
    """COPY the changed gold facts with their row hash into ``stage``: ``COPY_SESSIONS``
    sessions at once, each a share of the line keys (PostgreSQL parses a COPY on one core).
    Returns the rows copied."""
    import concurrent.futures

    select = ", ".join(quote_ident(c) for c in columns)

    def load_share(share: int) -> int:
        cursor = duck.cursor()
        other = session()
        try:
            rows = cursor.sql(
                f"SELECT {select}, {_hash_sql(columns)} AS {HASH_COLUMN} FROM {FACT} g "
                f"WHERE hash(line_key) % {COPY_SESSIONS} = {share} {only_changed}"
            ).to_arrow_reader(BATCH_ROWS)
            copied = _copy_arrow(other, stage, [*columns, HASH_COLUMN], rows)
            other.commit()
            return copied
        finally:
            other.close()
            cursor.close()

    with concurrent.futures.ThreadPoolExecutor(COPY_SESSIONS) as pool:
        return sum(pool.map(load_share, range(COPY_SESSIONS)))


def _stage_fact_deletes(conn: psycopg.Connection, duck: duckdb.DuckDBPyConnection) -> int:
    """COPY the line keys the warehouse has and gold lost (DuckDB's ``deleted``) into this
    session's temporary ``stage_fact_deletes``; returns their count."""
    conn.execute("DROP TABLE IF EXISTS stage_fact_deletes")
    conn.execute('CREATE TEMP TABLE stage_fact_deletes (line_key text COLLATE "C" PRIMARY KEY)')
    return _copy_arrow(
        conn, "stage_fact_deletes", ["line_key"], duck.sql("SELECT line_key FROM deleted").to_arrow_reader(BATCH_ROWS)
    )


def _copy_unchanged_facts(conn: psycopg.Connection, stage: str, fact: str, columns: list[str]) -> None:
    """Bulk ``next`` mode: copy the live fact's unchanged rows into the next fact on the
    server (nothing travels through the client), so it holds the whole new fact."""
    every = ", ".join(quote_ident(c) for c in [*columns, HASH_COLUMN])
    conn.execute(
        f"INSERT INTO {stage} ({every}) SELECT {every} FROM {fact} f WHERE NOT EXISTS "
        f"(SELECT 1 FROM {stage} n WHERE n.line_key = f.line_key) AND NOT EXISTS "
        "(SELECT 1 FROM stage_fact_deletes d WHERE d.line_key = f.line_key)"
    )


def _published_hashes(conn: psycopg.Connection, duck: duckdb.DuckDBPyConnection, lake: Lake, fact: str) -> int:
    """The warehouse fact's (line_key, row hash) pairs into DuckDB table ``published``;
    returns their count."""
    lake.tmp.mkdir(parents=True, exist_ok=True)
    hashes = lake.tmp / f"pg-fact-hashes-{uuid.uuid4().hex}.csv"
    try:
        with (
            open(hashes, "wb") as out,
            conn.cursor() as cur,
            cur.copy(f"COPY (SELECT line_key, {HASH_COLUMN} FROM {fact}) TO STDOUT (FORMAT csv)") as copy,
        ):
            for chunk in copy:
                out.write(chunk)
        duck.execute(
            "CREATE OR REPLACE TABLE published AS SELECT * FROM read_csv(?, header = false, "
            "columns = {'line_key': 'VARCHAR', 'h': 'BIGINT'}, quote = '\"', escape = '\"', "
            "nullstr = '', auto_detect = false)",
            [str(hashes)],
        )
    finally:
        hashes.unlink(missing_ok=True)
    conn.commit()
    (rows,) = duck.execute("SELECT count(*) FROM published").fetchall()[0]
    return int(rows)


def _bulk_mode(conn: psycopg.Connection, fact: str, columns: list[str]) -> str:
    """How a bulk publish may apply its changes to the live fact.

    ``next`` (replace the table) only when the live fact is what the migrations made plus
    what the replacement carries over (indexes, table grants, table comment): exactly the
    published columns, no partitions or inheritance, no table settings, tablespace, column
    compression or statistics targets, extended statistics, exclusion or deferrable keys,
    other owner, triggers, policies, column grants or comments, publications, views.
    ``upsert`` when another table's foreign key references the fact (its primary key can be
    neither dropped nor replaced). ``in_place`` otherwise."""
    compression = "OR a.attcompression <> ''" if conn.info.server_version >= 140000 else ""  # 14+
    (referenced, blocked) = one_row(
        conn.execute(
            "WITH t(oid) AS (SELECT %s::regclass::oid) SELECT "
            "EXISTS (SELECT 1 FROM pg_constraint c, t WHERE c.confrelid = t.oid AND c.conrelid <> t.oid), "
            "EXISTS (SELECT 1 FROM pg_depend d, t WHERE d.refobjid = t.oid AND d.classid = 'pg_rewrite'::regclass) "
            "OR EXISTS (SELECT 1 FROM pg_attribute a, t WHERE a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped "
            f"  AND (a.attname <> ALL(%s) OR a.attacl IS NOT NULL OR a.attstattarget >= 0 {compression}"
            "       OR a.attgenerated <> '' OR a.attidentity <> '')) "
            "OR EXISTS (SELECT 1 FROM pg_class k, t WHERE k.oid = t.oid AND (k.relkind <> 'r' OR k.reloptions IS NOT NULL "
            "  OR k.reltablespace <> 0 OR k.relowner <> (SELECT oid FROM pg_roles WHERE rolname = current_user))) "
            "OR EXISTS (SELECT 1 FROM pg_inherits i, t WHERE t.oid IN (i.inhrelid, i.inhparent)) "
            "OR EXISTS (SELECT 1 FROM pg_statistic_ext e, t WHERE e.stxrelid = t.oid) "
            "OR EXISTS (SELECT 1 FROM pg_constraint c, t WHERE c.conrelid = t.oid "
            "  AND (c.contype = 'x' OR (c.contype IN ('p', 'u') AND c.condeferrable))) "
            "OR EXISTS (SELECT 1 FROM pg_trigger g, t WHERE g.tgrelid = t.oid AND NOT g.tgisinternal) "
            "OR EXISTS (SELECT 1 FROM pg_description x, t WHERE x.objoid = t.oid AND x.objsubid > 0) "
            "OR EXISTS (SELECT 1 FROM pg_policy p, t WHERE p.polrelid = t.oid) "
            "OR EXISTS (SELECT 1 FROM pg_publication_rel r, t WHERE r.prrelid = t.oid) "
            "OR EXISTS (SELECT 1 FROM pg_publication p WHERE p.puballtables) "
            + (
                "OR EXISTS (SELECT 1 FROM pg_publication_namespace n, pg_class k, t WHERE k.oid = t.oid "
                "  AND n.pnnspid = k.relnamespace)"
                if conn.info.server_version >= 150000
                else ""
            ),  # PostgreSQL 15+
            [fact, [*columns, HASH_COLUMN]],
        )
    )
    conn.commit()
    return "upsert" if referenced else "in_place" if blocked else "next"


#: An SQL identifier as pg_get_indexdef prints it: plain, or double-quoted with "" inside.
_IDENT = r'(?:"(?:[^"]|"")*"|[^\s."]+)'


def _build_next_indexes(
    conn: psycopg.Connection, schema: str, session: Callable[[], psycopg.Connection]
) -> list[tuple[str, str, str | None, str | None]]:
    """Build every index of the live fact (primary key included) on :data:`FACT_NEXT`, under
    temporary names, ``COPY_SESSIONS`` at a time (CREATE INDEX takes a SHARE lock, which
    does not exclude another CREATE INDEX). Returns (next name, live name, constraint,
    constraint type) per index."""
    import concurrent.futures

    rows = _fact_indexes(conn, f"{quote_ident(schema)}.fact_sales")
    conn.commit()
    built: list[tuple[str, str, str | None, str | None]] = []
    statements: list[str] = []
    for n, (live, definition, constraint, kind) in enumerate(rows):
        parts = re.fullmatch(
            rf"CREATE (UNIQUE )?INDEX {_IDENT} ON (?:ONLY )?{_IDENT}(?:\.{_IDENT})? (USING .*)", definition, re.S
        )
        if parts is None:
            raise UserError(f"cannot rebuild index {live} of the warehouse fact: unexpected definition {definition}")
        name = NEXT_INDEX.format(n=n)
        statements.append(f"CREATE {parts[1] or ''}INDEX {name} ON {quote_ident(schema)}.{FACT_NEXT} {parts[2]}")
        built.append((name, live, constraint, kind))

    def build(statement: str) -> None:
        other = session()
        try:
            other.execute(f"SET maintenance_work_mem = '{MAINTENANCE_WORK_MEM}'")
            other.execute(statement)
            other.commit()
        finally:
            other.close()

    with concurrent.futures.ThreadPoolExecutor(COPY_SESSIONS) as pool:
        list(pool.map(build, statements))
    return built


def _detach_fact(conn: psycopg.Connection, s: str, staged: FactStage) -> list[tuple[str, str]]:
    """Bulk modes, first in the swap: take the fact's foreign keys off before the dimensions
    are merged, and return them for :func:`_merge_fact` to add back, validated against the
    new dimensions. (Dimension rows deleted under a deferred foreign key leave pending
    trigger events on the dimension, and PostgreSQL refuses to alter a table that has
    them: the keys must go before, not after, the dimensions change.)

    ``next`` also drops the live fact and renames :data:`FACT_NEXT` into its place with the
    live table's key, index names and grants."""
    table = f"{s}.fact_sales"
    foreign = [(name, definition) for name, definition, kind in _fact_constraints(conn, table) if kind == "f"]
    if staged.mode != "next":
        for name, _ in foreign:
            conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {quote_ident(name)}")
        return foreign
    grants = _grants(conn, table)
    (comment,) = one_row(conn.execute("SELECT obj_description(%s::regclass, 'pg_class')", [table]))
    conn.execute(f"DROP TABLE {table}")
    conn.execute(f"ALTER TABLE {s}.{FACT_NEXT} RENAME TO fact_sales")
    if comment is not None:
        from psycopg import sql

        conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(sql.SQL(table), sql.Literal(comment)))
    # the live table's grants exactly: not the default privileges the new table got
    for grantee in {grantee for grantee, _, _ in _grants(conn, table)}:
        conn.execute(f"REVOKE ALL ON {table} FROM {grantee}")
    for grantee, privilege, grantable in grants:
        conn.execute(f"GRANT {privilege} ON {table} TO {grantee}{' WITH GRANT OPTION' if grantable else ''}")
    for name, live, constraint, kind in staged.indexes:
        if kind in ("p", "u") and constraint:
            key = "PRIMARY KEY" if kind == "p" else "UNIQUE"
            conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT {quote_ident(constraint)} {key} USING INDEX {name}")
        else:
            conn.execute(f"ALTER INDEX {s}.{name} RENAME TO {quote_ident(live)}")
    return foreign


def _merge_fact(
    conn: psycopg.Connection, s: str, columns: list[str], staged: FactStage, foreign: list[tuple[str, str]]
) -> tuple[int, int]:
    """Apply the staged fact changes (see :class:`FactStage`), after the dimensions;
    returns (written, deleted). ``foreign``: the keys :func:`_detach_fact` took off.

    ``next``: the next fact is already in place: its foreign keys are added back.
    ``in_place``: the changed rows are deleted and re-inserted with the fact's keys and
    indexes dropped first and rebuilt after (a sorted build instead of row-by-row upkeep).
    Both hold the fact's exclusive lock until commit: readers wait, then see the new gold.
    """
    table = f"{s}.fact_sales"
    written = deleted = 0
    if staged.mode == "next":
        written, deleted = staged.sent - staged.deletes, staged.deletes
    else:
        deleted = conn.execute(
            f"DELETE FROM {table} f USING stage_fact_deletes d WHERE f.line_key = d.line_key"
        ).rowcount
        column_list = ", ".join(quote_ident(c) for c in columns)
        stage = FACT_STAGE.format(s=s)
        if staged.mode == "upsert":
            updates = ", ".join(f"{quote_ident(c)} = EXCLUDED.{quote_ident(c)}" for c in columns if c != "line_key")
            written = conn.execute(
                f"INSERT INTO {table} ({column_list}) SELECT {column_list} FROM {stage} "
                f"ON CONFLICT (line_key) DO UPDATE SET {updates}"
            ).rowcount
        else:
            conn.execute(f"SET LOCAL maintenance_work_mem = '{MAINTENANCE_WORK_MEM}'")
            conn.execute(f"DELETE FROM {table} f USING {stage} x WHERE f.line_key = x.line_key")
            keys = [(n, d) for n, d, kind in _fact_constraints(conn, table) if kind in ("p", "u")]
            indexes = [(name, d) for name, d, constraint, _ in _fact_indexes(conn, table) if constraint is None]
            for name, _ in keys:
                conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {quote_ident(name)}")
            for name, _ in indexes:
                conn.execute(f"DROP INDEX {s}.{quote_ident(name)}")
            written = conn.execute(f"INSERT INTO {table} ({column_list}) SELECT {column_list} FROM {stage}").rowcount
            for name, definition in keys:
                conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT {quote_ident(name)} {definition}")
            for _, definition in indexes:
                conn.execute(definition)
    conn.execute("DROP TABLE stage_fact_deletes")
    for name, definition in foreign:
        conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT {quote_ident(name)} {definition}")
    return written, deleted


def _fact_constraints(conn: psycopg.Connection, table: str) -> list[tuple[str, str, str]]:
    """(name, definition, type) of the fact's keys, unique and foreign keys."""
    return conn.execute(
        "SELECT conname, pg_get_constraintdef(oid), contype FROM pg_constraint WHERE conrelid = %s::regclass "
        "AND contype IN ('p', 'u', 'f') ORDER BY contype DESC, conname",
        [table],
    ).fetchall()


def _fact_indexes(conn: psycopg.Connection, table: str) -> list[tuple[str, str, str | None, str | None]]:
    """(index name, definition, constraint name, constraint type) of every index of the
    fact; the primary key's first, the plain indexes (no constraint) last."""
    return conn.execute(
        "SELECT x.relname, pg_get_indexdef(i.indexrelid), c.conname, c.contype "
        "FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid "
        "LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid "
        "WHERE i.indrelid = %s::regclass ORDER BY c.contype NULLS LAST, i.indexrelid",
        [table],
    ).fetchall()


def _grants(conn: psycopg.Connection, table: str) -> list[tuple[str, str, bool]]:
    """(grantee, privilege, grantable) on ``table`` beyond its owner's own."""
    return conn.execute(
        "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END, "
        "a.privilege_type, a.is_grantable FROM pg_class c, aclexplode(c.relacl) a "
        "WHERE c.oid = %s::regclass AND a.grantee <> c.relowner",
        [table],
    ).fetchall()


def _merge_table(conn: psycopg.Connection, s: str, name: str, columns: list[str]) -> tuple[int, int]:
    """Make ``<s>.<name>`` equal to its staging table, touching only rows that differ."""
    key = TABLES[name]
    stage = quote_ident(f"stage_{name}")
    target = f"{s}.{quote_ident(name)}"
    match = " AND ".join(f"x.{quote_ident(k)} = t.{quote_ident(k)}" for k in key)
    cur = conn.execute(f"DELETE FROM {target} t WHERE NOT EXISTS (SELECT 1 FROM {stage} x WHERE {match})")
    deleted = cur.rowcount
    column_list = ", ".join(quote_ident(c) for c in columns)
    others = [c for c in columns if c not in key]
    updates = ", ".join(f"{quote_ident(c)} = EXCLUDED.{quote_ident(c)}" for c in others)
    differs = (
        f"({', '.join('t.' + quote_ident(c) for c in others)}) IS DISTINCT FROM "
        f"({', '.join('EXCLUDED.' + quote_ident(c) for c in others)})"
    )
    conflict = ", ".join(quote_ident(k) for k in key)
    action = f"DO UPDATE SET {updates} WHERE {differs}" if others else "DO NOTHING"
    cur = conn.execute(
        f"INSERT INTO {target} AS t ({column_list}) SELECT {column_list} FROM {stage} ON CONFLICT ({conflict}) {action}"
    )
    return cur.rowcount, deleted


__all__ = [
    "LATEST_VERSION",
    "MIGRATIONS",
    "PostgresPublication",
    "TableLoad",
    "migrate",
    "publish_postgres",
    "schema_version",
]
