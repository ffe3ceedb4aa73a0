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
- **Faults**: lock waits are bounded by ``postgres.lock_timeout_seconds``; connection loss,
  lock timeouts, deadlocks and serialization failures are retried with backoff
  (``postgres.publish_attempts``); a failed attempt rolls back, leaving the previous gold.
  The password is never printed: errors go through :mod:`saleslake.pg`'s redaction.
"""

from __future__ import annotations

import io
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
from deltalake import DeltaTable

from saleslake.errors import TransientError, UserError
from saleslake.gold.publish import releases
from saleslake.lake import Lake, snapshot_view_sql
from saleslake.pg import connect, redact, scrub

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

    from saleslake.config import Settings

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

#: Versioned DDL: (version, description, statements); ``{s}`` is the quoted schema.
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (1, "star schema with primary and foreign keys, publish log", [
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
    ],),
    (2, "fact row hash (incremental publish), foreign keys, BI indexes", [
        "ALTER TABLE {s}.fact_sales ADD COLUMN IF NOT EXISTS _row_hash bigint",
        *[
            f"""DO $$ BEGIN
                IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'fact_sales_{col}_fkey'
                               AND conrelid = '{{s}}.fact_sales'::regclass) THEN
                    ALTER TABLE {{s}}.fact_sales ADD CONSTRAINT fact_sales_{col}_fkey FOREIGN KEY ({col})
                    REFERENCES {{s}}.{dim} ({key}) DEFERRABLE INITIALLY DEFERRED;
                END IF; END $$"""
            for col, dim, key in (
                ("order_date_key", "dim_date", "date_key"), ("ship_date_key", "dim_date", "date_key"),
                ("customer_sk", "dim_customer", "customer_sk"), ("product_sk", "dim_product", "product_sk"),
                ("store_sk", "dim_store", "store_sk"), ("geography_sk", "dim_geography", "geography_sk"),
            )
        ],
        "CREATE INDEX IF NOT EXISTS fact_sales_order_date_key_idx ON {s}.fact_sales (order_date_key)",
        "CREATE INDEX IF NOT EXISTS fact_sales_customer_sk_idx ON {s}.fact_sales (customer_sk)",
        "CREATE INDEX IF NOT EXISTS fact_sales_product_sk_idx ON {s}.fact_sales (product_sk)",
        "CREATE INDEX IF NOT EXISTS fact_sales_store_sk_idx ON {s}.fact_sales (store_sk)",
        "CREATE INDEX IF NOT EXISTS agg_sales_daily_date_key_idx ON {s}.agg_sales_daily (date_key)",
    ],),
]
LATEST_VERSION = MIGRATIONS[-1][0]

#: (column, referenced table, referenced column) of the fact's foreign keys.
FACT_FOREIGN_KEYS = (
    ("order_date_key", "dim_date", "date_key"), ("ship_date_key", "dim_date", "date_key"),
    ("customer_sk", "dim_customer", "customer_sk"), ("product_sk", "dim_product", "product_sk"),
    ("store_sk", "dim_store", "store_sk"), ("geography_sk", "dim_geography", "geography_sk"),
)


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
    attempts: int = 1
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
    (version,) = conn.execute(
        f"SELECT coalesce(max(version), 0) FROM {quote_ident(schema)}.saleslake_schema_version").fetchone()
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
            conn.execute(f"INSERT INTO {s}.saleslake_schema_version (version, description) VALUES (%s, %s)",
                         [version, description])
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
        "ORDER BY ordinal_position", [schema, table]).fetchall()
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


def publish_postgres(settings: Settings, dsn: str | None = None, schema: str | None = None,
                     run_id: str | None = None) -> PostgresPublication:
    """Publish the latest gold release of ``settings.home`` into the warehouse (see module doc)."""
    import psycopg

    lake = Lake(settings.home)
    pg = settings.postgres
    schema = _check_schema(schema or pg.warehouse_schema)
    release = _release(lake)
    target = dsn or pg.dsn_for("warehouse")
    where = redact(target)
    secret = pg.password("warehouse")
    attempts = pg.publish_attempts
    for attempt in range(1, attempts + 1):
        try:
            result = _publish_once(settings, lake, release, target, schema, run_id)
            result.attempts = attempt
            return result
        except TransientError as exc:
            failure: Exception = exc
        except psycopg.OperationalError as exc:  # connection lost, lock/statement timeout, deadlock
            failure = exc
        except psycopg.Error as exc:
            raise UserError(f"publishing gold to PostgreSQL at {where} failed: {scrub(str(exc), secret)}") from None
        if attempt < attempts:
            time.sleep(min(0.5 * 2 ** (attempt - 1), 8.0))
    raise TransientError(
        f"publishing gold to PostgreSQL at {where} failed after {attempts} attempt(s): "
        f"{scrub(str(failure), secret)}; the warehouse still holds the previous gold"
    )


def _publish_once(settings: Settings, lake: Lake, release: dict, target: str, schema: str,
                  run_id: str | None) -> PostgresPublication:
    started = time.perf_counter()
    pg = settings.postgres
    s = quote_ident(schema)
    versions: dict[str, int] = release["table_versions"]
    missing = [t for t in TABLES if t not in versions]
    if missing:
        raise UserError(f"the latest gold release lacks {', '.join(missing)}: run `saleslake rebuild gold`")
    result = PostgresPublication(release_id=release["release_id"], dsn=redact(target), schema=schema)
    conn = connect(pg, "warehouse", target, application_name=f"{pg.application_name} publish")
    duck: duckdb.DuckDBPyConnection | None = None
    try:
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", [f"saleslake.publish.{schema}"])
        conn.commit()
        result.migrations_applied = migrate(conn, schema)
        result.schema_version = schema_version(conn, schema)
        last = conn.execute(
            f"SELECT release_id, lake, table_versions, schema_version FROM {s}.saleslake_publish_log "
            "ORDER BY publish_id DESC LIMIT 1").fetchone()
        conn.commit()
        same_lake = last is not None and last[1] == str(lake.home)
        published: dict[str, int] = {k: int(v) for k, v in (last[2] or {}).items()} if same_lake else {}
        if (same_lake and last[0] == release["release_id"] and last[3] == result.schema_version
                and not result.migrations_applied):
            result.skipped = True
            result.tables = {name: TableLoad(skipped=True) for name in TABLES}
            result.seconds = time.perf_counter() - started
            return result

        config: dict[str, Any] = {}
        if settings.duckdb_memory_limit:
            config["memory_limit"] = settings.duckdb_memory_limit
        if settings.duckdb_threads:
            config["threads"] = settings.duckdb_threads
        duck = duckdb.connect(config=config)
        for name in TABLES:
            table = DeltaTable(str(lake.gold / name), version=versions[name])
            duck.execute(f"CREATE VIEW {quote_ident(name)} AS {snapshot_view_sql(table)}")

        # 1. stage: temporary tables in this session, loaded by COPY (no target locks held)
        staged: dict[str, list[str]] = {}
        fact_rows_before = 0
        for name in TABLES:
            load = result.tables.setdefault(name, TableLoad())
            step = time.perf_counter()
            (load.rows,) = duck.execute(f"SELECT count(*) FROM {quote_ident(name)}").fetchall()[0]
            if published.get(name) == versions[name] and not result.migrations_applied:
                load.skipped = True
                continue
            gold_columns = set(duck.sql(f"SELECT * FROM {quote_ident(name)} LIMIT 0").columns)
            columns = [c for c in _target_columns(conn, schema, name) if c in gold_columns]
            stage = FACT_STAGE.format(s=s) if name == FACT else quote_ident(f"stage_{name}")
            conn.execute(f"DROP TABLE IF EXISTS {stage}")
            kind = "UNLOGGED" if name == FACT else "TEMP"  # the fact's is filled by several sessions
            conn.execute(f"CREATE {kind} TABLE {stage} (LIKE {s}.{quote_ident(name)})")
            select = ", ".join(quote_ident(c) for c in columns)
            if name == FACT:
                conn.commit()

                def session() -> psycopg.Connection:
                    return connect(pg, "warehouse", target, application_name=f"{pg.application_name} publish")

                load.sent, fact_rows_before = _stage_fact_changes(conn, duck, lake, s, stage, columns, session)
                columns = [*columns, HASH_COLUMN]
            else:
                reader = duck.sql(f"SELECT {select} FROM {quote_ident(name)}").to_arrow_reader(BATCH_ROWS)
                load.sent = _copy_arrow(conn, stage, columns, reader)
            conn.execute(f"ANALYZE {stage}")
            staged[name] = columns
            result.timings[f"stage_{name}"] = round(time.perf_counter() - step, 3)
        conn.commit()
        step = time.perf_counter()

        # 2. swap: one transaction makes the new gold visible at once
        with conn.transaction():
            conn.execute(f"SET LOCAL lock_timeout = {int(pg.lock_timeout_seconds * 1000)}")
            sent = result.tables[FACT].sent if FACT in staged else 0
            bulk = sent > BULK_FACT_ROWS and sent > BULK_FACT_SHARE * fact_rows_before
            for name, columns in staged.items():
                load = result.tables[name]
                if name == FACT:
                    load.written, load.deleted = _merge_fact(conn, s, schema, columns, bulk)
                else:
                    load.written, load.deleted = _merge_table(conn, s, name, columns)
                result.timings[f"merge_{name}"] = round(time.perf_counter() - step, 3)
                step = time.perf_counter()
            import json

            written = {n: {"written": t.written, "deleted": t.deleted, "sent": t.sent, "skipped": t.skipped}
                       for n, t in result.tables.items()}
            result.seconds = time.perf_counter() - started
            (result.publish_id,) = conn.execute(
                f"INSERT INTO {s}.saleslake_publish_log (release_id, run_id, lake, schema_version, table_versions, "
                "rows_written, seconds) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING publish_id",
                [release["release_id"], run_id or release.get("run_id"), str(lake.home), result.schema_version,
                 json.dumps(versions), json.dumps(written), result.seconds],
            ).fetchone()
        for name in staged:  # after the swap: unlinking the stage's files holds no target lock
            stage = FACT_STAGE.format(s=s) if name == FACT else quote_ident(f"stage_{name}")
            conn.execute(f"DROP TABLE IF EXISTS {stage}")
        conn.commit()
        result.timings["swap_commit"] = round(time.perf_counter() - step, 3)
    finally:
        if duck is not None:
            duck.close()
        conn.close()
    result.seconds = time.perf_counter() - started
    return result


def _stage_fact_changes(conn: psycopg.Connection, duck: duckdb.DuckDBPyConnection, lake: Lake, s: str,
                        stage: str, columns: list[str], session: Any) -> tuple[int, int]:
    """COPY the gold facts that are new or differ (by row hash) from the warehouse's into
    ``stage`` (``COPY_SESSIONS`` sessions in parallel, each a share of the line keys) and
    the line keys the warehouse has but gold lost into ``stage_fact_deletes``.
    Returns the rows staged (changes + deletes) and the rows the warehouse fact holds."""
    import concurrent.futures

    lake.tmp.mkdir(parents=True, exist_ok=True)
    hashes = lake.tmp / f"pg-fact-hashes-{uuid.uuid4().hex}.csv"
    try:
        with open(hashes, "wb") as out, conn.cursor() as cur, cur.copy(
                f"COPY (SELECT line_key, {HASH_COLUMN} FROM {s}.fact_sales) TO STDOUT (FORMAT csv)") as copy:
            for chunk in copy:
                out.write(chunk)
        duck.execute(
            "CREATE OR REPLACE TABLE published AS SELECT * FROM read_csv(?, header = false, "
            "columns = {'line_key': 'VARCHAR', 'h': 'BIGINT'}, quote = '\"', escape = '\"', "
            "nullstr = '', auto_detect = false)", [str(hashes)])
    finally:
        hashes.unlink(missing_ok=True)
    select = ", ".join(quote_ident(c) for c in columns)
    (published_rows,) = duck.execute("SELECT count(*) FROM published").fetchall()[0]
    # The changed keys once (a plain table: the sessions' cursors share it), then each
    # session reads its share of them: the comparison is not repeated per session.
    only_changed = ""  # an empty warehouse: every gold fact is a change
    if published_rows:
        duck.execute(
            f"CREATE OR REPLACE TABLE changed AS SELECT line_key FROM {FACT} g WHERE NOT EXISTS "
            f"(SELECT 1 FROM published p WHERE p.line_key = g.line_key AND p.h = {_hash_sql(columns)})")
        only_changed = "AND line_key IN (SELECT line_key FROM changed)"

    def load_share(share: int) -> int:
        cursor = duck.cursor()
        other = session()
        try:
            changes = cursor.sql(
                f"SELECT {select}, {_hash_sql(columns)} AS {HASH_COLUMN} FROM {FACT} g "
                f"WHERE hash(line_key) % {COPY_SESSIONS} = {share} {only_changed}"
            ).to_arrow_reader(BATCH_ROWS)
            rows = _copy_arrow(other, stage, [*columns, HASH_COLUMN], changes)
            other.commit()
            return rows
        finally:
            other.close()
            cursor.close()

    with concurrent.futures.ThreadPoolExecutor(COPY_SESSIONS) as pool:
        sent = sum(pool.map(load_share, range(COPY_SESSIONS)))
    conn.execute("DROP TABLE IF EXISTS stage_fact_deletes")
    conn.execute('CREATE TEMP TABLE stage_fact_deletes (line_key text COLLATE "C" PRIMARY KEY)')
    deletes = duck.sql(
        f"SELECT line_key FROM published p WHERE NOT EXISTS (SELECT 1 FROM {FACT} g WHERE g.line_key = p.line_key)"
    ).to_arrow_reader(BATCH_ROWS)
    sent += _copy_arrow(conn, "stage_fact_deletes", ["line_key"], deletes)
    duck.execute("DROP TABLE published; DROP TABLE IF EXISTS changed")
    return sent, int(published_rows)


def _merge_fact(conn: psycopg.Connection, s: str, schema: str, columns: list[str], bulk: bool) -> tuple[int, int]:
    """Apply the staged fact changes: delete the removed lines, upsert the changed ones.

    ``bulk`` (many rows): the changed rows are deleted and re-inserted with the fact's
    primary key, indexes and foreign keys dropped first and rebuilt after (a sorted index
    build and one validating join per foreign key instead of row-by-row maintenance). This
    takes the fact's exclusive lock until commit: readers wait, then see the new gold.
    """
    cur = conn.execute(f"DELETE FROM {s}.fact_sales f USING stage_fact_deletes d WHERE f.line_key = d.line_key")
    deleted = cur.rowcount
    conn.execute("DROP TABLE stage_fact_deletes")
    column_list = ", ".join(quote_ident(c) for c in columns)
    stage = FACT_STAGE.format(s=s)
    if not bulk:
        updates = ", ".join(f"{quote_ident(c)} = EXCLUDED.{quote_ident(c)}" for c in columns if c != "line_key")
        cur = conn.execute(f"INSERT INTO {s}.fact_sales ({column_list}) SELECT {column_list} FROM {stage} "
                           f"ON CONFLICT (line_key) DO UPDATE SET {updates}")
        return cur.rowcount, deleted
    table = f"{s}.fact_sales"
    conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
    conn.execute(f"DELETE FROM {table} f USING {stage} x WHERE f.line_key = x.line_key")
    constraints = conn.execute(
        "SELECT conname, pg_get_constraintdef(oid), contype FROM pg_constraint WHERE conrelid = %s::regclass "
        "AND contype IN ('p', 'u', 'f') ORDER BY contype DESC, conname", [table]).fetchall()  # p, u before f
    indexes = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = 'fact_sales' "
        "AND indexname NOT IN (SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass)",
        [schema, table]).fetchall()
    for name, _, _ in sorted(constraints, key=lambda c: c[2] != "f"):  # foreign keys first
        conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {quote_ident(name)}")
    for name, _ in indexes:
        conn.execute(f"DROP INDEX {s}.{quote_ident(name)}")
    cur = conn.execute(f"INSERT INTO {table} ({column_list}) SELECT {column_list} FROM {stage}")
    written = cur.rowcount
    for name, definition, _ in constraints:
        conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT {quote_ident(name)} {definition}")
    for _, definition in indexes:
        conn.execute(definition)
    return written, deleted


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
    differs = (f"({', '.join('t.' + quote_ident(c) for c in others)}) IS DISTINCT FROM "
               f"({', '.join('EXCLUDED.' + quote_ident(c) for c in others)})")
    conflict = ", ".join(quote_ident(k) for k in key)
    action = f"DO UPDATE SET {updates} WHERE {differs}" if others else "DO NOTHING"
    cur = conn.execute(f"INSERT INTO {target} AS t ({column_list}) SELECT {column_list} FROM {stage} "
                       f"ON CONFLICT ({conflict}) {action}")
    return cur.rowcount, deleted


__all__ = ["LATEST_VERSION", "MIGRATIONS", "PostgresPublication", "TableLoad", "migrate", "publish_postgres",
           "schema_version"]
