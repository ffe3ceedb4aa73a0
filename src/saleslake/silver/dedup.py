"""Deduplicate a chunk's valid lines against itself and against silver, then write.

Versions of one line (same ``line_key``) are ordered by ``(landed_seq, position)``: the
latest landed wins, whatever order files are processed in. A version whose content
(``row_hash``) equals the version it would replace is an exact repeat (``duplicate``);
a different one is a ``correction``. Only the newest version of each key is written.

Write strategy (measured in benchmarks/silver_write.py and profile_stages.py): when no
incoming key exists in silver yet, a plain append; otherwise one commit that adds the new
rows and rewrites only the files holding the versions being replaced (lake.replace_files).
A Delta MERGE did the same rewrite but also joined every incoming row with the target:
chunks that replaced a dozen lines paid for the half million they merely inserted.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction

from saleslake.contract import SALES_LINES_SCHEMA
from saleslake.lake import replace_files, snapshot_view_sql, write_delta, writer_properties
from saleslake.runs import StageCounts
from saleslake.storage.lease import check_commit

BATCH_ROWS = 200_000

# Business content of a line: two versions with the same hash are exact repeats.
HASHED_COLUMNS = (
    "order_date",
    "ship_date",
    "ship_mode",
    "order_priority",
    "customer_id",
    "customer_name",
    "segment",
    "city",
    "state",
    "country",
    "postal_code",
    "market",
    "region",
    "product_id",
    "product_name",
    "category",
    "sub_category",
    "quantity",
    "sales",
    "discount",
    "profit",
    "shipping_cost",
    "currency",
    "order_ts",
    "store_id",
    "payment_method",
    "card_fingerprint",
)


def row_hash_sql(absent: tuple[str, ...] = ()) -> str:
    """SQL for ``row_hash`` over the typed canonical columns of any source; ``absent``
    columns (those a source never has) hash as NULL without being referenced."""
    columns = ["NULL" if c in absent else c for c in HASHED_COLUMNS]
    # DuckDB's hash() is ~10x cheaper than md5 over the cast text of 23 columns. Should a
    # DuckDB upgrade change it, re-sent exact repeats would count as corrections once and
    # be rewritten with identical content: no data changes.
    return f"CAST(hash({', '.join(columns)}) AS VARCHAR)"


@dataclass
class DedupCounts:
    valid: int
    duplicate: int
    corrected: int

    def stage_counts(self, quarantined: int) -> StageCounts:
        """A silver stage's counts: these lines plus the rows quarantined beside them
        (rows_read = valid + quarantined + duplicate, CONTRACT §1)."""
        return StageCounts(
            rows_read=self.valid + self.duplicate + quarantined,
            rows_valid=self.valid,
            rows_quarantined=quarantined,
            rows_duplicate=self.duplicate,
            rows_corrected=self.corrected,
        )


def classify(
    con: duckdb.DuckDBPyConnection,
    target: DeltaTable,
    applied_seq: int,
    existing_filter: str = "true",
    target_files: list[str] | None = None,
    position: str = "landed_seq",
) -> DedupCounts:
    """From temp table ``valid`` build the ``upserts`` view (rows to write) and count outcomes.

    Only keys seen more than once in the chunk or already in silver need their versions
    ordered; every other row is simply new. ``applied_seq``: rows whose ``position``
    column is at or below it are already in silver (a rerun after a crash); they are
    counted, not written again (``position`` differs from the version order ``landed_seq``
    only for a CSV reparse, see :mod:`saleslake.silver.process`).
    ``existing_filter``: a predicate on silver rows that every earlier version of an
    incoming key satisfies (e.g. its source and months), so the lookup prunes files.
    ``target_files``: the only files of silver that can hold an earlier version (None: all).
    """
    _find_existing(con, target, existing_filter, target_files)
    _order_versions(con, position)
    counts = _count_outcomes(con)
    _select_upserts(con, applied_seq, position)
    return counts


def _find_existing(
    con: duckdb.DuckDBPyConnection, target: DeltaTable, existing_filter: str, target_files: list[str] | None
) -> None:
    """Temp table ``existing``: the silver versions of the incoming keys, with the file
    holding each (the files a rewrite must replace)."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE existing AS
        SELECT s.line_key, s.row_hash, s.landed_seq, s.order_month, s.filename
        FROM ({snapshot_view_sql(target, target_files, filename=True)}) s
        WHERE ({existing_filter}) AND s.line_key IN (SELECT line_key FROM valid)
        """
    )


def _order_versions(con: duckdb.DuckDBPyConnection, position: str) -> None:
    """Temp table ``versions``: every incoming version of a key seen more than once or
    already in silver, in landing order, with the hash it follows and whether it replaces
    silver's; keys seen once skip the window (most of a chunk)."""
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE multi AS
        SELECT line_key FROM valid GROUP BY line_key HAVING count(*) > 1
        UNION SELECT line_key FROM existing
        """
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE versions AS
        SELECT v.line_key, v.fi, v.pos, v.landed_seq, v.{position} AS position_seq, v.row_hash,
               coalesce(lag(v.row_hash) OVER w, e.row_hash) AS previous_hash,
               e.landed_seq AS existing_seq, e.row_hash AS existing_hash,
               -- a newer, different version of a line silver holds: written in its place
               coalesce(e.landed_seq < v.landed_seq AND v.row_hash <> e.row_hash, false) AS replaces_silver,
               row_number() OVER (PARTITION BY v.line_key ORDER BY v.landed_seq DESC, v.pos DESC) AS newest
        FROM valid v LEFT JOIN existing e USING (line_key)
        WHERE v.line_key IN (SELECT line_key FROM multi)
        WINDOW w AS (PARTITION BY v.line_key ORDER BY v.landed_seq, v.pos)
        """
    )


def _count_outcomes(con: duckdb.DuckDBPyConnection) -> DedupCounts:
    """Exact repeats and corrections among the ordered versions; the rest of ``valid`` is valid."""
    valid, duplicate, corrected = con.execute(
        """
        SELECT (SELECT count(*) FROM valid),
               count(*) FILTER (WHERE row_hash = previous_hash),
               count(*) FILTER (WHERE previous_hash IS NOT NULL AND row_hash <> previous_hash)
        FROM versions
        """
    ).fetchall()[0]
    return DedupCounts(valid=valid - duplicate, duplicate=duplicate, corrected=corrected)


def _select_upserts(con: duckdb.DuckDBPyConnection, applied_seq: int, position: str) -> None:
    """Views ``upserts`` (the rows to write) and ``replaced`` (the silver keys they replace)."""
    # Write the newest version of a key unless silver already holds it or something newer.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP VIEW upserts AS
        -- one pass over valid: a row without a version entry has a key seen once, so it is new
        SELECT v.* EXCLUDE (fi, pos)
        FROM valid v LEFT JOIN versions x ON v.line_key = x.line_key AND v.fi = x.fi AND v.pos = x.pos
        WHERE v.{position} > {applied_seq}
          AND (x.line_key IS NULL
               OR (x.newest = 1
                   AND (x.existing_seq IS NULL OR x.replaces_silver)))
        """
    )
    # The silver keys the upserts replace (the rows of upserts that exist in silver).
    con.execute(
        f"""
        CREATE OR REPLACE TEMP VIEW replaced AS
        SELECT line_key FROM versions WHERE newest = 1 AND position_seq > {applied_seq} AND replaces_silver
        """
    )


def lines_reader(con: duckdb.DuckDBPyConnection, query: str) -> pa.RecordBatchReader:
    """The rows of ``query`` as silver lines, streamed in batches of ``BATCH_ROWS`` so a
    write holds one batch at a time. The reader streams from the connection: no other
    query may run on it until the reader is drained."""
    batches = con.sql(query).to_arrow_reader(BATCH_ROWS)
    return pa.RecordBatchReader.from_batches(SALES_LINES_SCHEMA, (b.cast(SALES_LINES_SCHEMA) for b in batches))


def append_lines(target: DeltaTable, lines: pa.RecordBatchReader, commit: CommitProperties) -> None:
    """Append ``lines`` to silver in one commit carrying ``commit`` (the source positions),
    partitioned by month with the writer settings of every silver write."""
    write_delta(
        target,
        lines,
        mode="append",
        partition_by=["order_month"],
        commit_properties=commit,
        writer_properties=writer_properties(),
    )


def write_upserts(
    con: duckdb.DuckDBPyConnection, target: DeltaTable, positions: list[Transaction], dropped: str | None = None
) -> str:
    """Write view ``upserts`` to silver with the source ``positions`` in the same commit;
    returns ``"append"`` or ``"rewrite"`` (some files were rewritten without replaced rows).
    ``dropped``: a relation of (line_key, filename) of silver rows to remove in the same
    commit whether or not a row replaces them (an earlier parse of a reparsed file)."""
    check_commit(target.table_uri)  # a writer whose lease was lost commits nothing more
    commit = CommitProperties(app_transactions=positions)
    gone = "SELECT line_key FROM replaced" + (f" UNION ALL SELECT line_key FROM {dropped}" if dropped else "")
    holding = "SELECT e.filename FROM existing e JOIN replaced r USING (line_key)" + (
        f" UNION SELECT filename FROM {dropped}" if dropped else ""
    )
    files = [r[0] for r in con.sql(f"SELECT DISTINCT filename FROM ({holding}) ORDER BY 1").fetchall()]
    columns = ", ".join(f'"{name}"' for name in SALES_LINES_SCHEMA.names)
    query = f"SELECT {columns} FROM upserts"
    if files:
        survivors = f"SELECT {columns} FROM ({snapshot_view_sql(target, files)}) WHERE line_key NOT IN ({gone})"
        query = f"{query} UNION ALL {survivors}"
    reader = lines_reader(con, query)
    if not files:
        append_lines(target, reader, commit)
        return "append"
    replace_files(target, reader, files, ["order_month"], commit)
    return "rewrite"
