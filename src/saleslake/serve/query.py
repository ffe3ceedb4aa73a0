"""Read-only SQL over committed snapshots: ``gold.*``, ``silver.*`` and ``system.*``.

Readers never open the warehouse file a run may be writing; they read Delta snapshots.
Gold tables are read at the versions of the latest gold *release*, so a reader never
mixes new facts with old dimensions while a publish is half done.

Read-only by construction, not by looking at the SQL: a reader connection is an
in-memory DuckDB whose tables are views over Arrow datasets (the Delta snapshots, read by
Arrow), with every file, network and extension access of DuckDB itself off and its
configuration locked before any SQL of the caller runs. ``COPY … TO``, ``EXPORT
DATABASE``, ``ATTACH`` of a file, ``INSTALL``/``LOAD``, ``read_csv('/etc/passwd')`` and
``SET``/``RESET`` fail whatever statement carries them (``EXPLAIN ANALYZE COPY`` included);
the only catalogs are in memory and die with the connection, so nothing persists. Reading
local files can be allowed per folder (``query.allow_files``, ``query --allow-files DIR``);
DuckDB then lets the SQL read *and write* under those folders, which is why they may not
hold the lake and why COPY-like statements are also refused by their kind (below).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb
import pyarrow as pa

from saleslake.errors import UserError
from saleslake.gold.release import gold_release_tables
from saleslake.lake import Lake, register_datasets

#: Set when the connection opens; ``enable_external_access`` and ``lock_configuration``
#: follow once the views exist (allowed folders can only be set while access is on).
READER_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "allow_persistent_secrets": False,
}

#: The statements ``query`` runs. Safety does not rest on this list (the connection
#: refuses what writes); it turns everything else into a clear line instead of a
#: DuckDB error about files or settings.
QUERY_STATEMENTS = ("SELECT", "EXPLAIN")

FILES_HINT = "reading local files is off; 'saleslake query --allow-files DIR' reads files under DIR"


def reader_connection(lake: Lake, allow_files: Sequence[Path] = ()) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with one view per readable table, read-only by construction
    (see the module's docstring); ``allow_files``: folders whose files SQL may read
    (checked by :func:`allowed_folders`). Use one ``cursor()`` per thread."""
    con = duckdb.connect(config=READER_CONFIG)
    try:
        if allow_files:
            folders = ", ".join("'" + str(p).replace("'", "''") + "'" for p in allowed_folders(lake, allow_files))
            con.execute(f"SET allowed_directories = [{folders}]")
        con.execute("SET enable_external_access = false")
        tables = {k: v for k, v in lake.delta_tables().items() if not k.startswith("gold.")}
        register_datasets(con, tables)
        # Gold at the latest release's versions: never new facts with old dimensions.
        register_datasets(con, {f"gold.{name}": table for name, table in gold_release_tables(lake).items()})
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def allowed_folders(lake: Lake, folders: Sequence[Path]) -> list[str]:
    """The prefixes DuckDB may read files under (``allowed_directories``): each folder as
    given and resolved, with a trailing slash so ``/data`` does not allow ``/data2``.
    A folder that does not exist, or holds the lake or lies inside it, is refused."""
    home = lake.home.resolve()
    prefixes: list[str] = []
    for folder in folders:
        given = Path(folder).expanduser().absolute()
        if not given.is_dir():
            raise UserError(f"--allow-files {folder}: no such folder (name a folder whose files query may read)")
        resolved = given.resolve()
        if resolved == home or home in resolved.parents or resolved in home.parents:
            raise UserError(
                f"--allow-files {folder}: the folder overlaps the lake ({home}), which query must never be able "
                "to write; allow a folder outside the lake"
            )
        for path in dict.fromkeys((given, resolved)):
            prefixes.append(str(path).rstrip("/") + "/")
    return prefixes


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


def statement_kind(sql: str) -> tuple[str, str]:
    """The kind of the one statement in ``sql`` (``SELECT``, ``COPY``, ...) and its leading
    keyword (INSTALL is of kind LOAD); for EXPLAIN [ANALYZE] those of the statement
    explained. A user error when ``sql`` does not parse or holds more or less than one
    statement."""
    statements = _parse(sql)
    if len(statements) != 1:
        raise UserError(f"query takes exactly one SQL statement, not {len(statements)}")
    kind = _kind(statements[0])
    if kind != "EXPLAIN":
        return kind, _leading_word(sql)
    # EXPLAIN [ANALYZE] [(options)] <statement>: the first keyword from which the rest parses
    for start, token in duckdb.tokenize(sql)[1:]:
        if token.name != "keyword":
            continue
        try:
            inner = duckdb.extract_statements(sql[start:])
        except (duckdb.Error, ValueError):
            continue
        if len(inner) == 1:
            return _kind(inner[0]), _leading_word(sql[start:])
    return kind, "EXPLAIN"


def _leading_word(sql: str) -> str:
    tokens = duckdb.tokenize(sql)
    if not tokens:
        return ""
    start = tokens[0][0]
    end = tokens[1][0] if len(tokens) > 1 else len(sql)
    return sql[start:end].strip().upper()


def _parse(sql: str) -> list:
    try:
        return duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise UserError(f"query: {_first_line(exc)} (check the SQL)") from None


def _kind(statement) -> str:
    try:
        return statement.type.name
    except ValueError:  # a kind this duckdb's Python enum does not know (UPDATE EXTENSIONS)
        return "unknown"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_query(lake: Lake, sql: str, allow_files: Sequence[Path] = ()) -> pa.Table:
    """The result of one read-only statement over the lake (see the module's docstring)."""
    kind, word = statement_kind(sql)
    if kind not in QUERY_STATEMENTS:
        raise UserError(
            f"query is read-only: {word or kind} statements do not run here (one SELECT over gold.*, silver.*, system.*)"
        )
    con = reader_connection(lake, allow_files)
    try:
        result = con.sql(qualify_system(sql))
        return pa.table({}) if result is None else result.to_arrow_table()
    except duckdb.PermissionException as exc:
        hint = f"only files under {', '.join(str(p) for p in allow_files)} can be read" if allow_files else FILES_HINT
        raise UserError(f"query cannot access files or the network: {_first_line(exc)} ({hint})") from None
    except duckdb.Error as exc:
        raise UserError(f"query failed: {_first_line(exc)}") from None
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
