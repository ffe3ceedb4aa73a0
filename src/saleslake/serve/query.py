"""Read-only SQL over committed snapshots: ``gold.*``, ``silver.*`` and ``system.*``.

Readers never open the warehouse file a run may be writing; they read Delta snapshots.
Gold tables are read at the versions of the latest gold *release*, so a reader never
mixes new facts with old dimensions while a publish is half done.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from saleslake.errors import UserError
from saleslake.gold.publish import gold_release_tables
from saleslake.lake import Lake, register_snapshots

READ_ONLY_STATEMENTS = {"SELECT", "EXPLAIN"}


def reader_connection(lake: Lake) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with one view per readable table."""
    con = duckdb.connect()
    tables = {k: v for k, v in lake.delta_tables().items() if not k.startswith("gold.")}
    register_snapshots(con, tables)
    # Gold at the latest release's versions: never new facts with old dimensions.
    register_snapshots(con, {f"gold.{name}": table for name, table in gold_release_tables(lake).items()})
    return con


def qualify_system(sql: str) -> str:
    """Rewrite ``system.x`` to ``memory."system".x``: DuckDB has a built-in catalog named system."""
    out, last = [], 0
    for start, kind in duckdb.tokenize(sql):
        if kind.name not in ("identifier", "keyword"):
            continue
        word = sql[start : start + 7]
        if word.lower() == "system." and (start == 0 or sql[start - 1] != "."):
            out.append(sql[last:start])
            out.append('memory."system".')
            last = start + 7
    out.append(sql[last:])
    return "".join(out)


def run_query(lake: Lake, sql: str) -> pa.Table:
    statements = duckdb.extract_statements(sql)
    if len(statements) != 1:
        raise UserError("query takes exactly one SQL statement")
    kind = statements[0].type.name
    if kind not in READ_ONLY_STATEMENTS:
        raise UserError(f"query is read-only: {kind} statements are not allowed")
    con = reader_connection(lake)
    try:
        return con.sql(qualify_system(sql)).to_arrow_table()
    except duckdb.Error as exc:
        raise UserError(f"query failed: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()


def quarantine_rows(lake: Lake, reason: str | None, limit: int) -> pa.Table:
    where = "true"
    if reason:
        escaped = reason.replace("'", "''")
        where = f"list_contains(reasons, '{escaped}') OR list_contains(list_transform(reasons, lambda r: split_part(r, ':', 1)), '{escaped}')"
    return run_query(
        lake,
        f"""SELECT source_system, reasons, source_position, order_id, line_id, raw_line,
                   CAST(raw AS VARCHAR) AS raw, bronze_uri, ingested_at
            FROM silver.quarantine WHERE {where}
            ORDER BY landed_seq DESC, source_position LIMIT {int(limit)}""",
    )
