"""Publish the gold marts from the warehouse file as Delta tables, as one *release*.

Each mart is streamed (Arrow record batches, bounded memory) from ``gold.<table>`` in
``lake.warehouse`` into the Delta table ``lake.gold_table(<table>)``. When every table is
written, one row is appended to ``system/gold_releases`` with the Delta version of each
table.

- The dimensions, ``dim_date``, ``dim_geography`` and ``agg_sales_daily`` are small:
  each publish overwrites them (a new Delta version; older versions stay readable until
  vacuumed).
- ``fact_sales`` is partitioned by ``order_month`` (``YYYY-MM`` of the order date). After
  an incremental build only its changes are published, in one MERGE limited to the
  partitions they touch: the recomputed facts (``intermediate.int_fact_recompute``) are
  upserted, and delete markers remove the facts of pending lines gone from silver or
  moved to another month (``intermediate.int_pending_lines`` holds the month each had).
  The MERGE is idempotent, so a publish that died half way is simply done again. After
  a full build (``gold_state.build.overwrite_pending``), or when the Delta table is
  missing, not partitioned by month, or holds another number of rows than the warehouse
  after the MERGE, the fact is overwritten instead. A touched partition holding more than
  :data:`MAX_FILES_PER_PARTITION` files is compacted.

Readers that must not see a mix of old dimensions and new facts while a publish is half
done open the tables at the versions of the latest release (:mod:`saleslake.gold.release`).

A publish that dies half way leaves some tables one version ahead and no new release
row: readers keep seeing the previous release, and the pending work stays recorded in
the warehouse until the release is (see :mod:`saleslake.gold.state`). Vacuuming a gold
table must keep the files of the latest release's version (delta-rs' default retention
of 7 days does).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
from deltalake import DeltaTable

from saleslake.connections.duckdb import session
from saleslake.crashpoints import crash_point
from saleslake.gold.release import GOLD_TABLES, record_release
from saleslake.lake import Lake, TableLocation, open_delta, read_delta, write_delta, writer_properties
from saleslake.storage.lease import check_commit

from . import state

if TYPE_CHECKING:
    from saleslake.config import Settings

BATCH_ROWS = 100_000

FACT = "fact_sales"
#: The Delta partition column of fact_sales (a column of the mart).
FACT_PARTITION = "order_month"
#: A MERGE adds files to the partitions it touches; beyond this many, compact them.
MAX_FILES_PER_PARTITION = 16


@dataclass
class Publication:
    versions: dict[str, int] = field(default_factory=dict)  # Delta version per table, as released
    fact_mode: str = ""  # "overwrite" or "merge"
    fact_upserts: int = 0  # rows merged into the Delta fact (recomputed facts)
    fact_deletes: int = 0  # delete markers merged
    seconds: float = 0.0


def publish_delta(lake: Lake, run_id: str, settings: Settings | None = None) -> Publication:
    """Write every gold mart to ``lake.gold_table(<table>)``, record a release, then clear the
    warehouse's pending work (it is published).

    Money columns keep their DECIMAL types; an overwrite uses ``schema_mode="overwrite"``
    so a model can change its columns. Internal fact columns (leading underscore) are
    not published.
    """
    started = time.perf_counter()
    con = session(settings, lake, database=lake.warehouse) if settings else duckdb.connect(str(lake.warehouse))
    result = Publication()
    try:
        state.prepare(con)
        overwrite_fact = state.read(con).overwrite_pending or not _mergeable(lake.gold_table(FACT))
        for name in GOLD_TABLES:
            path = lake.gold_table(name)
            if name == FACT and not overwrite_fact:
                result.fact_mode = "merge"
                if not _merge_fact(con, path, result):
                    result.fact_mode = "overwrite"  # the MERGE did not give the warehouse's rows
                    _overwrite(con, name, path)
            else:
                if name == FACT:
                    result.fact_mode = "overwrite"
                _overwrite(con, name, path)
            result.versions[name] = int(read_delta(path).version())
            crash_point("gold.publish.after_table")
        crash_point("gold.publish.before_release")
        record_release(lake, run_id, result.versions)
        crash_point("gold.publish.after_release")
        state.clear_pending(con)
    finally:
        con.close()
    result.seconds = time.perf_counter() - started
    return result


def _published_columns(con: duckdb.DuckDBPyConnection, name: str) -> list[tuple[str, str]]:
    """(column, DuckDB type) of a gold table, without internal (leading underscore) columns."""
    rows = con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = 'gold' AND table_name = ? ORDER BY column_index",
        [name],
    ).fetchall()
    return [(column, typ) for column, typ in rows if not column.startswith("_")]


def _select_list(columns: list[tuple[str, str]]) -> str:
    return ", ".join(f'"{column}"' for column, _ in columns)


def _overwrite(con: duckdb.DuckDBPyConnection, name: str, path: TableLocation) -> None:
    columns = _select_list(_published_columns(con, name))
    reader = con.sql(f'SELECT {columns} FROM gold."{name}"').to_arrow_reader(BATCH_ROWS)
    write_delta(
        path,
        reader,
        mode="overwrite",
        schema_mode="overwrite",
        partition_by=[FACT_PARTITION] if name == FACT else None,
        writer_properties=writer_properties(),
    )


def _mergeable(path: TableLocation) -> bool:
    table = open_delta(path)
    return table is not None and table.metadata().partition_columns == [FACT_PARTITION]


def _merge_fact(con: duckdb.DuckDBPyConnection, path: TableLocation, result: Publication) -> bool:
    """MERGE the pending changes of the warehouse fact into the Delta fact, in one commit
    limited to the month partitions they touch. Returns False when the Delta fact then
    does not hold as many rows as the warehouse fact (the caller overwrites it)."""
    columns = _published_columns(con, FACT)
    _stage_recomputed_facts(con, columns)
    _stage_delete_markers(con, columns)
    upserts, deletes = con.execute(
        "SELECT count(*) FILTER (WHERE NOT _deleted), count(*) FILTER (WHERE _deleted) FROM fact_changes"
    ).fetchall()[0]
    result.fact_upserts, result.fact_deletes = int(upserts), int(deletes)
    table = read_delta(path)
    if upserts or deletes:
        _merge_changes(con, table, path)
    con.execute("DROP TABLE fact_changes")
    (warehouse_rows,) = con.execute(f"SELECT count(*) FROM gold.{FACT}").fetchall()[0]
    return _delta_rows(read_delta(path)) == warehouse_rows


def _stage_recomputed_facts(con: duckdb.DuckDBPyConnection, columns: list[tuple[str, str]]) -> None:
    """Temporary ``fact_changes``: the facts this build recomputed, to upsert (``_deleted``
    false). Their order dates bound the fact scan: zone maps skip the rest."""
    (low, high) = con.execute(
        "SELECT coalesce(min(order_date_key), 0), coalesce(max(order_date_key), -1) "
        "FROM intermediate.int_fact_recompute"
    ).fetchall()[0]
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE fact_changes AS
        SELECT {_select_list(columns)}, false AS _deleted
        FROM gold.{FACT}
        WHERE order_date_key BETWEEN {int(low)} AND {int(high)}
          AND line_key IN (SELECT line_key FROM intermediate.int_fact_recompute)
        """
    )


def _stage_delete_markers(con: duckdb.DuckDBPyConnection, columns: list[tuple[str, str]]) -> None:
    """Add to ``fact_changes`` a delete marker (``_deleted`` true, the key and month, every
    other column null) for each pending line's fact as it may be in Delta: in a month it
    no longer has (the line moved or left silver)."""
    markers = ", ".join(
        "had.line_key" if c == "line_key" else "had.month" if c == FACT_PARTITION else f'CAST(NULL AS {t}) AS "{c}"'
        for c, t in columns
    )
    con.execute(
        f"""
        INSERT INTO fact_changes
        WITH had AS (
            SELECT DISTINCT line_key, old_order_month AS month
            FROM intermediate.int_pending_lines
            WHERE old_order_month IS NOT NULL
        ),
        has AS (
            SELECT line_key, {FACT_PARTITION} AS month FROM fact_changes
        )
        SELECT {markers}, true
        FROM had
        ANTI JOIN has ON has.line_key = had.line_key AND has.month = had.month
        """
    )


def _merge_changes(con: duckdb.DuckDBPyConnection, table: DeltaTable, path: TableLocation) -> None:
    """One MERGE of ``fact_changes`` into the Delta fact: its predicate names the months
    touched, so only those partitions are read and rewritten. Then the crowded ones among
    them are compacted."""
    rows = con.execute(f"SELECT DISTINCT {FACT_PARTITION} FROM fact_changes ORDER BY 1").fetchall()
    months = [month for (month,) in rows]
    month_list = ", ".join("'" + m.replace("'", "''") + "'" for m in months)
    reader = con.sql("SELECT * FROM fact_changes").to_arrow_reader(BATCH_ROWS)
    check_commit(table.table_uri)
    (
        table.merge(
            reader,
            predicate=(
                f"t.line_key = s.line_key AND t.{FACT_PARTITION} = s.{FACT_PARTITION} "
                f"AND t.{FACT_PARTITION} IN ({month_list})"
            ),
            source_alias="s",
            target_alias="t",
            writer_properties=writer_properties(),
        )
        .when_matched_delete(predicate="s._deleted")
        .when_matched_update_all(predicate="NOT s._deleted", except_cols=["_deleted"])
        .when_not_matched_insert_all(predicate="NOT s._deleted", except_cols=["_deleted"])
        .execute()
    )
    crash_point("gold.publish.fact_merged")
    _compact(read_delta(path), months)


def _delta_rows(table: DeltaTable) -> int:
    """Row count of a Delta snapshot from its log (every delta-rs add action has stats)."""
    actions = pa.table(table.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return 0
    counts = actions.column("num_records").to_pylist()
    if any(c is None for c in counts):
        return -1  # unknown: the caller overwrites
    return int(sum(counts))


def _compact(table: DeltaTable, months: list[str]) -> None:
    actions = pa.table(table.get_add_actions(flatten=True))
    column = f"partition.{FACT_PARTITION}"
    if actions.num_rows == 0 or column not in actions.column_names:
        return
    files: dict[str, int] = {}
    for month in actions.column(column).to_pylist():
        files[month] = files.get(month, 0) + 1
    crowded = [m for m in months if files.get(m, 0) > MAX_FILES_PER_PARTITION]
    if crowded:
        check_commit(table.table_uri)
        table.optimize.compact(
            partition_filters=[(FACT_PARTITION, "in", crowded)], writer_properties=writer_properties()
        )
