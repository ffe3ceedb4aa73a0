"""The DuckDB session every stage uses: bounded memory, the configured threads, spilling
to the lake's ``tmp/`` (never the working directory; a local folder for an object-store
lake, see ``Lake.work``), and reading the lake's objects on an object-store lake (s3fs
registered on the connection, see ``Lake.register_filesystem``).

    from saleslake.connections.duckdb import session
    con = session(settings, lake, preserve_insertion_order=True)          # in memory
    con = session(settings, lake, database=lake.warehouse)               # the warehouse file

:func:`session_settings` is the same as a dict, for dbt's profile (dbt-duckdb opens its
own connections).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

if TYPE_CHECKING:
    from saleslake.config import Settings
    from saleslake.lake import Lake

Value = str | bool | int | float | list[str]


def session_settings(settings: Settings, lake: Lake, **extra: Value) -> dict[str, Value]:
    """DuckDB settings of a stage: ``settings.duckdb_memory_limit`` and
    ``settings.duckdb_threads`` (0: all cores), temp files under the lake's tmp/, plus
    ``extra`` (e.g. ``preserve_insertion_order``)."""
    # DuckDB creates the temp folder when it first spills, but not its parent
    lake.tmp.mkdir(parents=True, exist_ok=True)
    config: dict[str, Value] = {"temp_directory": str(lake.tmp / "duckdb")}
    if settings.duckdb_memory_limit:
        config["memory_limit"] = settings.duckdb_memory_limit
    if settings.duckdb_threads:
        config["threads"] = settings.duckdb_threads
    config.update(extra)
    return config


def session(
    settings: Settings, lake: Lake, database: Path | str = ":memory:", read_only: bool = False, **extra: Value
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with :func:`session_settings` (in memory unless ``database``)
    that reads the lake's snapshots (``lake.snapshot_view_sql``) wherever the lake is."""
    con = duckdb.connect(str(database), read_only=read_only, config=session_settings(settings, lake, **extra))
    return lake.register_filesystem(con)
