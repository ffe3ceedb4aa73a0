"""Where the earlier versions of a point-of-sale line sit: the key index
``system/pos_line_keys`` (docs/contract.md, "Lake layout").

A transaction can come again with another event time (a till re-sending its day, a
correction): its lines must replace their earlier versions, which can sit in any month of
silver. Looking every incoming key up in all of silver's ``line_key`` column costs a scan
of 32-character strings per batch (~0.5 s at 10M lines here); the index holds, per line
version written, 60 bits of its key (an md5 already, so as good as random) with its
``order_ts`` and ``order_month``: the same lookup reads 8-byte integers (~0.07 s at 10M),
and finds the months and the time range of silver that hold the earlier versions, so the
dedup reads only those files.

Invariant: every POS line in silver has an index row with its key and ``order_ts``. The
stream appends a batch's rows before committing the batch's lines (:func:`record`), so a
crash between the two leaves extra index rows, never missing ones; a rerun finds those
rows (same key, same time) and does not add them twice. The index may hold more than
silver (a key collision, a replaced version's old time, lines retention removed): that
only widens a lookup. A lake whose silver has POS lines from before the index existed gets
it built from silver in one commit (:meth:`LineKeys.ensure`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import duckdb
import pyarrow as pa
from deltalake import DeltaTable

from saleslake.contract import UTC_TIME
from saleslake.lake import Lake, files_overlapping, open_delta, read_delta, snapshot_view_sql, write_delta
from saleslake.storage.lease import check_commit

SCHEMA = pa.schema([("key", pa.int64()), ("order_ts", UTC_TIME), ("order_month", pa.string())])

#: The index key of a ``line_key`` (an md5 in hex): its first 15 hex digits, 60 bits.
KEY_SQL = "('0x' || substr({}, 1, 15))::BIGINT"

#: Delta keeps timestamp statistics at millisecond precision: a second of margin.
STATS_MARGIN = timedelta(seconds=1)

#: Compact the index when a stream of small batches left this many files.
MAX_FILES = 64


@dataclass
class Earlier:
    """Where silver holds earlier versions of a batch's keys."""

    months: list[str] = field(default_factory=list)
    low: datetime | None = None
    high: datetime | None = None

    def existing_filter(self) -> str:
        """The predicate every earlier version satisfies (for :func:`dedup.classify`)."""
        if not self.months:
            return "false"
        months = ", ".join(f"'{m}'" for m in self.months)
        return f"s.source_system = 'pos' AND s.order_month IN ({months})"

    def files(self, lines: DeltaTable) -> list[str] | None:
        """The silver files whose ``order_ts`` range can hold an earlier version."""
        if self.low is None or self.high is None:
            return []
        return files_overlapping(lines, "order_ts", self.low - STATS_MARGIN, self.high + STATS_MARGIN)


class LineKeys:
    """The index of the lake's POS line keys; used by the stream under the silver commit lock."""

    def __init__(self, lake: Lake):
        self.path = lake.pos_line_keys
        self.table: DeltaTable | None = None

    def ensure(self, con: duckdb.DuckDBPyConnection, lines: DeltaTable) -> None:
        """Open the index, building it from silver's POS lines in one commit when the lake
        has none (a lake from before the index, or a new one: then it starts empty)."""
        if self.table is not None:
            self.table.update_incremental()
            return
        self.table = open_delta(self.path)
        if self.table is not None:
            return
        rows = con.sql(
            f"""SELECT DISTINCT {KEY_SQL.format("line_key")} AS key, order_ts, order_month
                FROM ({snapshot_view_sql(lines)}) WHERE source_system = 'pos'"""
        )
        write_delta(self.path, _typed(rows.to_arrow_reader()), mode="append")
        self.table = read_delta(self.path)

    def find_earlier(self, con: duckdb.DuckDBPyConnection) -> Earlier:
        """Temp table ``earlier_keys``: the index rows of the keys in view ``valid``; and
        where silver holds those versions."""
        assert self.table is not None, "ensure() first"
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE earlier_keys AS
                SELECT DISTINCT i.key, i.order_ts, i.order_month FROM ({snapshot_view_sql(self.table)}) i
                WHERE i.key IN (SELECT {KEY_SQL.format("line_key")} FROM valid)"""
        )
        months, low, high = con.execute(
            "SELECT list(DISTINCT order_month ORDER BY order_month), min(order_ts), max(order_ts) FROM earlier_keys"
        ).fetchall()[0]
        return Earlier(months or [], low, high)

    def record(self, con: duckdb.DuckDBPyConnection) -> int:
        """Append the index rows of view ``upserts`` (the versions about to be written)
        that the index does not hold yet; before the lines commit (the invariant above).
        Returns the rows appended."""
        assert self.table is not None, "ensure() first"
        rows = con.sql(
            f"""SELECT DISTINCT {KEY_SQL.format("u.line_key")} AS key, u.order_ts, u.order_month FROM upserts u
                ANTI JOIN earlier_keys e ON e.key = {KEY_SQL.format("u.line_key")} AND e.order_ts = u.order_ts"""
        ).to_arrow_table()
        if rows.num_rows:
            write_delta(self.table, _typed(rows), mode="append")
            if len(self.table.file_uris()) > MAX_FILES:
                # a slow stream writes one small file per batch; the lookup reads them all
                check_commit(self.table.table_uri)
                self.table.optimize.compact()
        return rows.num_rows


def _typed(rows: pa.Table | pa.RecordBatchReader) -> pa.Table | pa.RecordBatchReader:
    """Rows in the index's schema (DuckDB's timestamp type names its zone its own way)."""
    return rows.cast(SCHEMA)
