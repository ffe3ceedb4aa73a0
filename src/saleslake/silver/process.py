"""The silver stage for CSV objects: parse → validate → enrich → dedup → write.

Exactly once: every write to ``sales_lines`` and ``quarantine`` carries, in the same
Delta commit, the highest ``landed_seq`` it covers (a Delta application transaction).
A rerun after a crash resumes after the last committed position of each table, so no
row is lost or written twice.

A reparse (:func:`saleslake.bronze.reparse_csv`) is processed at its own ``landed_seq``
(its *position*), but its rows carry the original landing's (its ``version_seq``), so a
correction landed later still wins over them. The commit of each table that processes it
also removes every row of the file's earlier parse (rows with that ``landed_seq``: the
sequence identifies one file among CSV rows), so keys only the earlier parse had do not
linger; each removal rides on the same commit as the table's position, so a crash and a
rerun neither repeat nor lose it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import duckdb
import numpy as np
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction

from saleslake.bronze import landed_csv_objects, pending_csv_objects
from saleslake.config import Settings
from saleslake.connections.duckdb import session
from saleslake.contract import QUARANTINE_SCHEMA, SALES_LINES_SCHEMA
from saleslake.crashpoints import crash_point
from saleslake.errors import InputFileError
from saleslake.lake import Lake, ensure_delta, replace_files, snapshot_view_sql, txn_version, write_delta
from saleslake.runs import StageCounts, silver_commit_lock
from saleslake.silver.dedup import classify, row_hash_sql, write_upserts
from saleslake.silver.enrich import enrichment_columns, tax_rate_sql
from saleslake.silver.parse import (
    Chunk,
    collect_rejects,
    plan_chunks,
    reset_rejects,
    scan_groups,
    scan_sql,
)
from saleslake.silver.validate import checked_sql, raw_map_sql

APP_ID = "saleslake.silver.csv"


def connect(settings: Settings, lake: Lake) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with bounded memory that spills to the lake's tmp/."""
    # preserve_insertion_order: record positions rely on it (see parse.scan_sql).
    return session(settings, lake, preserve_insertion_order=True)


def _register_files(con: duckdb.DuckDBPyConnection, chunk: Chunk) -> None:
    files = pa.table(
        {
            "fi": pa.array(range(len(chunk.objects)), pa.int64()),
            "object_id": [o["object_id"] for o in chunk.objects],
            # the version order its rows carry, and the position (manifest order) of the object
            "landed_seq": pa.array([o["version_seq"] for o in chunk.objects], pa.int64()),
            "position_seq": pa.array([o["landed_seq"] for o in chunk.objects], pa.int64()),
            "landed_at": pa.array([o["landed_at"] for o in chunk.objects], pa.timestamp("us", tz="UTC")),
            "bronze_uri": [o["bronze_uri"] for o in chunk.objects],
            "source_system": [o["source_system"] for o in chunk.objects],
            "currency": [o["currency"] for o in chunk.objects],
        }
    )
    con.register("files_arrow", files)
    con.execute("CREATE OR REPLACE TEMP TABLE files AS SELECT * FROM files_arrow")
    con.unregister("files_arrow")


def _batch_id(chunk: Chunk) -> str:
    return f"csv:{chunk.first_seq}-{chunk.last_seq}"


def _write_quarantine(con: duckdb.DuckDBPyConnection, lake: Lake, chunk: Chunk, applied_seq: int) -> int:
    """Append the chunk's rejected rows (those not yet applied) with the position, removing
    in the same commit the rows of earlier parses of the reparsed files."""
    batch = _batch_id(chunk)
    rel = con.sql(
        f"""
        SELECT md5(f.object_id || ':record:' || c.pos) AS quarantine_key, f.source_system, c.reasons,
               c.raw_values AS raw, CAST(NULL AS VARCHAR) AS raw_line,
               c.order_id__txt AS order_id, c.line_id__txt AS line_id, f.bronze_uri,
               'record:' || c.pos AS source_position, f.landed_seq, '{batch}' AS batch_id,
               f.landed_at AS ingested_at, CAST(NULL AS BLOB) AS raw_bytes
        FROM checked c JOIN files f USING (fi)
        WHERE len(c.reasons) > 0 AND f.position_seq > {applied_seq}
        UNION ALL
        SELECT md5(f.object_id || ':line:' || r.line), f.source_system, r.reasons, r.raw, r.raw_line,
               NULL, NULL, f.bronze_uri,
               'line:' || r.line, f.landed_seq, '{batch}', f.landed_at, NULL
        FROM rejects r JOIN files f USING (fi)
        WHERE f.position_seq > {applied_seq}
        """
    )
    table = rel.to_arrow_table().cast(QUARANTINE_SCHEMA)
    commit = CommitProperties(app_transactions=[Transaction(APP_ID, chunk.last_seq)])
    target = ensure_delta(lake.quarantine, QUARANTINE_SCHEMA)
    versions = _reparsed_versions(chunk, applied_seq)
    files = _superseded_rows(con, target, "quarantine_key", versions) if versions else []
    if not files:
        write_delta(lake.quarantine, table, mode="append", commit_properties=commit)
        return table.num_rows
    con.register("new_quarantine", table)
    names = ", ".join(f'"{n}"' for n in QUARANTINE_SCHEMA.names)
    rows = (
        con.sql(
            f"""SELECT {names} FROM new_quarantine
                UNION ALL SELECT {names} FROM ({snapshot_view_sql(target, files)}) s WHERE NOT ({_of(versions)})"""
        )
        .to_arrow_table()
        .cast(QUARANTINE_SCHEMA)
    )
    con.unregister("new_quarantine")
    replace_files(target, pa.RecordBatchReader.from_batches(QUARANTINE_SCHEMA, rows.to_batches()), files, [], commit)
    return table.num_rows


def _of(versions: list[int]) -> str:
    """SQL predicate on rows ``s`` of a silver table: CSV rows from the landings ``versions``."""
    return f"s.source_system LIKE 'csv:%' AND s.landed_seq IN ({', '.join(map(str, versions))})"


def _reparsed_versions(chunk: Chunk, applied_seq: int) -> list[int]:
    """The original landings of the chunk's reparses not yet applied to a table at
    ``applied_seq``: the table's rows carrying them are an earlier parse of the file."""
    return sorted(
        {
            o["version_seq"]
            for o in chunk.objects
            if o["version_seq"] != o["landed_seq"] and o["landed_seq"] > applied_seq
        }
    )


def _superseded_rows(con: duckdb.DuckDBPyConnection, target: DeltaTable, key: str, versions: list[int]) -> list[str]:
    """Temp table ``superseded`` (key, filename): the CSV rows of ``target`` from the
    landings ``versions``; returns the files holding them."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE superseded AS
            SELECT s.{key}, s.source_system, s.filename
            FROM ({snapshot_view_sql(target, filename=True)}) s WHERE {_of(versions)}"""
    )
    return [r[0] for r in con.sql("SELECT DISTINCT filename FROM superseded ORDER BY 1").fetchall()]


def _checked_table(con: duckdb.DuckDBPyConnection, lake: Lake, settings: Settings, chunk: Chunk) -> pa.Table:
    """Every record of the chunk's files typed, enriched and with its reasons and position
    (``pos``); the rejected records' rows in temp table ``rejects``."""
    con.execute("DROP TABLE IF EXISTS rejects")
    groups = scan_groups(lake, chunk, settings.csv.max_record_bytes)
    tables = [_check_group(con, lake, settings, group) for group in groups]
    tables = [t.append_column("pos", pa.array(_positions(t["fi"].to_numpy()))) for t in tables]
    return pa.concat_tables(tables)


def _check_rows(con: duckdb.DuckDBPyConnection, lake: Lake, settings: Settings, chunk: Chunk) -> None:
    """One pass over the files: relation ``checked`` with every record typed, enriched and
    given its reasons (raw text kept only for rejected ones) and its position in its file,
    then the ``valid`` view in the silver schema. Each dialect group (cut where files
    holding an oversized record must be scanned sequentially: parse.scan_groups) is
    scanned and typed on its own; their rows are concatenated.

    ``checked`` is collected straight from the CSV scans, by projections only, with
    ``preserve_insertion_order`` on: its rows come in the files' record order, so a
    record's position (``pos``) is its distance from its file's first row, computed on the
    collected rows without materialising the text first or an order-preserving window.
    It is collected as Arrow (an ordered insert into a DuckDB table cost ~25 % more: a
    chunk is thousands of small files, each its own insert batch) and registered as a view.
    """
    _drop_checked(con)
    con.register("checked", _checked_table(con, lake, settings, chunk))


def _positions(fi: np.ndarray) -> np.ndarray:
    """1-based position of each row within its file, for rows in record order where each
    file's rows are contiguous: the row number minus the row number of the file's first."""
    rows = np.arange(len(fi), dtype=np.int64)
    first = np.ones(len(fi), dtype=bool)
    first[1:] = fi[1:] != fi[:-1]
    return rows - np.maximum.accumulate(np.where(first, rows, 0)) + 1


def _drop_checked(con: duckdb.DuckDBPyConnection) -> None:
    with contextlib.suppress(duckdb.Error):  # nothing registered
        con.unregister("checked")


def _file_columns(chunk: Chunk) -> dict[str, str]:
    """Per-file values as SQL over ``fi`` (list literals, not a join with ``files``: a join
    would not keep the scan's record order)."""

    def pick(values: list[str], sql_type: str) -> str:
        return f"CAST([{', '.join(values)}][CAST(fi AS BIGINT) - {chunk.first_fi - 1}] AS {sql_type})"

    def text(value: str | None) -> str:
        return "NULL" if value is None else "'" + value.replace("'", "''") + "'"

    objects = chunk.objects
    return {
        "landed_seq": pick([str(int(o["version_seq"])) for o in objects], "BIGINT"),
        "position_seq": pick([str(int(o["landed_seq"])) for o in objects], "BIGINT"),
        "landed_at": pick([text(str(o["landed_at"])) for o in objects], "TIMESTAMPTZ"),
        "bronze_uri": pick([text(o["bronze_uri"]) for o in objects], "VARCHAR"),
        "source_system": pick([text(o["source_system"]) for o in objects], "VARCHAR"),
        "currency": pick([text(o["currency"]) for o in objects], "VARCHAR"),
    }


def _check_group(con: duckdb.DuckDBPyConnection, lake: Lake, settings: Settings, group: Chunk) -> pa.Table:
    dialect = group.dialect
    scan = scan_sql(lake, group, settings.csv.max_record_bytes)
    checked = checked_sql(
        group.columns, dialect["decimal"], dialect["date_format"], scan, _file_columns(group), settings.quality
    )
    reset_rejects(con)
    try:
        table = _typed(con, settings, group, checked)
    except duckdb.OutOfMemoryException:
        if not group.sequential:
            raise
        raise _too_long_for_memory(settings, group) from None
    collect_rejects(con, lake, group)
    return table


def _too_long_for_memory(settings: Settings, group: Chunk) -> InputFileError:
    """The sequential scan holds a whole record in memory: one longer than DuckDB's
    memory limit allows stops the run (it is neither dropped nor guessed at)."""
    fi, longest = max(group.long_records, key=lambda item: item[1].length)
    obj = group.objects[fi - group.first_fi]
    return InputFileError(
        obj["original_path"],
        f"a record of {longest.length:,} bytes (at byte {longest.offset:,}; landed as {obj['bronze_uri']}) "
        f"does not fit in duckdb_memory_limit {settings.duckdb_memory_limit}",
        "raise SALESLAKE_DUCKDB_MEMORY_LIMIT and run again",
    )


def _typed(con: duckdb.DuckDBPyConnection, settings: Settings, group: Chunk, checked: str) -> pa.Table:
    return con.sql(
        f"""
        SELECT md5(source_system || chr(31) || order_id || chr(31) || line_id) AS line_key,
               source_system, order_id, line_id, order_date,
               CAST(NULL AS TIMESTAMPTZ) AS order_ts, ship_date, ship_mode, order_priority,
               customer_id, customer_name, segment, city, state, country, postal_code, market, region,
               CAST(NULL AS VARCHAR) AS store_id, product_id, product_name, category, sub_category,
               quantity, unit_price, sales, discount, profit, shipping_cost, currency,
               tax_rate, tax_amount, len(fraud_reasons) > 0 AS is_suspected_fraud, fraud_reasons,
               is_outlier, dq_score, {row_hash_sql(absent=("order_ts", "store_id", "payment_method", "card_fingerprint"))} AS row_hash, bronze_uri, landed_seq,
               landed_at AS ingested_at, strftime(order_date, '%Y-%m') AS order_month,
               CAST(NULL AS VARCHAR) AS payment_method, CAST(NULL AS VARCHAR) AS card_fingerprint,
               fi, position_seq, reasons, order_id__txt, line_id__txt,
               CASE WHEN len(reasons) > 0 THEN {raw_map_sql(group.columns)} END AS raw_values
        FROM (
            SELECT *, {enrichment_columns(settings)}
            FROM (SELECT *, {tax_rate_sql(settings)} AS tax_rate FROM ({checked}))
        )
        """
    ).to_arrow_table()


def _valid_view(con: duckdb.DuckDBPyConnection, chunk: Chunk) -> None:
    con.execute(
        f"""
        CREATE OR REPLACE TEMP VIEW valid AS
        SELECT c.* EXCLUDE (fi, pos, reasons, order_id__txt, line_id__txt, raw_values, bronze_uri, landed_seq,
                            ingested_at, order_month),
               c.bronze_uri, 'record:' || c.pos AS source_position, c.landed_seq,
               '{_batch_id(chunk)}' AS batch_id, c.ingested_at, c.order_month, c.fi, c.pos
        FROM checked c
        WHERE len(c.reasons) = 0
        """
    )


def _write_lines(con: duckdb.DuckDBPyConnection, lake: Lake, settings: Settings, chunk: Chunk, lines_seq: int):
    """Dedup the chunk's valid rows against silver and write them with the position; the
    rows of earlier parses of its reparsed files leave in the same commit and are no
    version an incoming row is compared with (the version they replaced comes back where
    the new parse has none: :func:`_restore_earlier_versions`)."""
    target = ensure_delta(lake.sales_lines, SALES_LINES_SCHEMA, ["order_month"])
    versions = _reparsed_versions(chunk, lines_seq) if chunk.last_seq > lines_seq else []
    existing = "s.source_system LIKE 'csv:%'" + (f" AND NOT ({_of(versions)})" if versions else "")
    counts = classify(con, target, lines_seq, existing_filter=existing, position="position_seq")
    if chunk.last_seq > lines_seq:
        dropped = "superseded" if versions and _superseded_rows(con, target, "line_key", versions) else None
        if dropped:
            _restore_earlier_versions(con, lake, settings, chunk)
        crash_point("silver.sales_lines.before_commit")
        write_upserts(con, target, [Transaction(APP_ID, chunk.last_seq)], dropped)
        crash_point("silver.sales_lines.after_commit")
    return counts


def _restore_earlier_versions(con: duckdb.DuckDBPyConnection, lake: Lake, settings: Settings, chunk: Chunk) -> None:
    """Add to view ``upserts`` the version of each line that an earlier parse of a reparsed
    file had replaced and that the chunk does not replace again (its new parse rejects the
    line or lacks it): as if the file had landed right once, the newest valid version of
    that line in the source's other files is the line. Only those files hold it (silver
    kept the newest version alone), so they are parsed again from bronze, once per reparse
    that needs it; a file bronze retention deleted gives nothing back."""
    affected = con.sql("SELECT DISTINCT line_key, source_system FROM superseded ANTI JOIN valid USING (line_key)")
    systems = sorted({row[1] for row in affected.fetchall()})
    if not systems:
        return
    own = {o["object_id"] for o in chunk.objects}
    objects = [
        o
        for o in landed_csv_objects(lake, chunk.last_seq, systems)
        if o["object_id"] not in own and lake.objects.exists(o["bronze_uri"])
    ]
    restored = None
    if objects:
        scan = connect(settings, lake)
        try:
            scan.register("affected", affected.to_arrow_table())
            versions = []
            for earlier in plan_chunks(objects, settings.csv.chunk_bytes):  # bounded memory, as a run
                scan.register("checked", _checked_table(scan, lake, settings, earlier))
                versions.append(
                    scan.sql(
                        f"""SELECT c.* EXCLUDE (fi, pos, reasons, order_id__txt, line_id__txt, raw_values),
                                   'record:' || c.pos AS source_position, '{_batch_id(chunk)}' AS batch_id, c.pos
                            FROM checked c SEMI JOIN affected a USING (line_key)
                            WHERE len(c.reasons) = 0"""
                    ).to_arrow_table()
                )
                scan.unregister("checked")
            scan.register("versions", pa.concat_tables(versions))
            restored = scan.sql(
                """SELECT * EXCLUDE (pos) FROM versions
                   QUALIFY row_number() OVER (PARTITION BY line_key ORDER BY landed_seq DESC, pos DESC) = 1"""
            ).to_arrow_table()
        finally:
            scan.close()
    if restored is None or restored.num_rows == 0:
        return
    con.register("restored_arrow", restored)
    con.execute("CREATE OR REPLACE TEMP TABLE restored AS SELECT * FROM restored_arrow")
    con.unregister("restored_arrow")
    con.execute("ALTER VIEW upserts RENAME TO incoming_upserts")
    con.execute("CREATE TEMP VIEW upserts AS SELECT * FROM incoming_upserts UNION ALL BY NAME SELECT * FROM restored")


def process_chunk(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    settings: Settings,
    chunk: Chunk,
    lines_seq: int,
    quarantine_seq: int,
) -> StageCounts:
    """Parse, check and write one chunk (with a reparse: see the module's doc)."""
    _register_files(con, chunk)
    _check_rows(con, lake, settings, chunk)
    _valid_view(con, chunk)
    rejected = con.execute(
        "SELECT (SELECT count(*) FROM checked WHERE len(reasons) > 0) + (SELECT count(*) FROM rejects)"
    ).fetchall()[0][0]
    with silver_commit_lock(lake):
        if chunk.last_seq > quarantine_seq:
            crash_point("silver.quarantine.before_commit")
            _write_quarantine(con, lake, chunk, quarantine_seq)
            crash_point("silver.quarantine.after_commit")
        counts = _write_lines(con, lake, settings, chunk, lines_seq)
    con.execute("DROP VIEW IF EXISTS upserts; DROP VIEW IF EXISTS replaced; DROP VIEW IF EXISTS valid")
    con.execute("DROP VIEW IF EXISTS incoming_upserts")
    _drop_checked(con)
    for name in ("rejects", "versions", "multi", "existing", "files", "superseded", "restored"):
        con.execute(f"DROP TABLE IF EXISTS {name}")
    return counts.stage_counts(rejected)


def processed_seq(lake: Lake) -> int:
    """The landing sequence up to which both silver tables hold every CSV object."""
    return min(txn_version(lake.sales_lines, APP_ID), txn_version(lake.quarantine, APP_ID))


def pending_objects(lake: Lake) -> tuple[list[dict], int, int]:
    """Landed CSV objects not yet in both silver tables, and each table's position."""
    ensure_delta(lake.sales_lines, SALES_LINES_SCHEMA, ["order_month"])
    ensure_delta(lake.quarantine, QUARANTINE_SCHEMA)
    lines_seq = txn_version(lake.sales_lines, APP_ID)
    quarantine_seq = txn_version(lake.quarantine, APP_ID)
    objects = pending_csv_objects(lake, min(lines_seq, quarantine_seq))
    return objects, lines_seq, quarantine_seq


def process_csv(lake: Lake, settings: Settings, progress: Callable[[int], None] | None = None) -> StageCounts:
    """Process every landed CSV object not yet in silver; returns the row accounting."""
    objects, lines_seq, quarantine_seq = pending_objects(lake)
    totals = StageCounts()
    if not objects:
        return totals
    con = connect(settings, lake)
    try:
        for chunk in plan_chunks(objects, settings.csv.chunk_bytes):
            totals.add(process_chunk(con, lake, settings, chunk, lines_seq, quarantine_seq))
            if progress:
                progress(chunk.size_bytes)
    finally:
        con.close()
    return totals
