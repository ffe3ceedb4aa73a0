"""Publish the gold marts from the warehouse file as Delta tables, as one *release*.

Each mart is streamed (Arrow record batches, bounded memory) from ``gold.<table>`` in
``lake.warehouse`` into the Delta table ``lake.gold / <table>`` (overwrite: a new Delta
version; older versions stay readable until vacuumed). When every table is written, one
row is appended to ``system/gold_releases`` with the Delta version of each table.

Readers that must not see a mix of old dimensions and new facts while a publish is half
done open the tables at the versions of the latest release::

    from saleslake.gold.publish import gold_release_tables, register_gold_release

    tables = gold_release_tables(lake)          # {"fact_sales": DeltaTable(..., version=v), ...}
    register_gold_release(con, lake)            # DuckDB views gold.<table> over the release

A publish that dies half way leaves some tables one version ahead and no new release
row: readers keep seeing the previous release. Vacuuming a gold table must keep the
files of the latest release's version (delta-rs' default retention of 7 days does).
``fact_sales`` is not partitioned: 10M rows publish in ~9 s as a few large files, and
its row groups carry min/max statistics for pruning.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from saleslake.lake import Lake, open_delta, snapshot_view_sql

if TYPE_CHECKING:
    from saleslake.config import Settings

#: The published marts, dimensions first.
GOLD_TABLES: tuple[str, ...] = (
    "dim_date",
    "dim_customer",
    "dim_product",
    "dim_store",
    "dim_geography",
    "fact_sales",
    "agg_sales_daily",
)

BATCH_ROWS = 100_000

GOLD_RELEASES_SCHEMA = pa.schema(
    [
        ("release_id", pa.string()),
        ("run_id", pa.string()),
        ("published_at", pa.timestamp("us", tz="UTC")),
        ("table_versions", pa.string()),  # JSON {table: Delta version}
    ]
)


def gold_releases_path(lake: Lake) -> Path:
    return lake.gold_releases


def publish_delta(lake: Lake, run_id: str, settings: Settings | None = None) -> dict[str, int]:
    """Write every gold mart to ``lake.gold/<table>`` and record a release.

    Returns the Delta version written per table. Money columns keep their DECIMAL
    types; ``schema_mode="overwrite"`` lets a model change its columns.
    """
    lake.gold.mkdir(parents=True, exist_ok=True)
    config: dict[str, object] = {}
    if settings is not None:
        if settings.duckdb_memory_limit:
            config["memory_limit"] = settings.duckdb_memory_limit
        if settings.duckdb_threads:
            config["threads"] = settings.duckdb_threads
    con = duckdb.connect(str(lake.warehouse), read_only=True, config=config)
    versions: dict[str, int] = {}
    try:
        for name in GOLD_TABLES:
            path = lake.gold / name
            reader = con.sql(f'SELECT * FROM gold."{name}"').to_arrow_reader(BATCH_ROWS)
            write_deltalake(str(path), reader, mode="overwrite", schema_mode="overwrite")
            versions[name] = int(DeltaTable(str(path)).version())
    finally:
        con.close()
    record_release(lake, run_id, versions)
    return versions


def record_release(lake: Lake, run_id: str, versions: dict[str, int]) -> str:
    """Append one release row (release_id, run_id, published_at, table_versions)."""
    release_id = uuid.uuid4().hex
    row = pa.table(
        {
            "release_id": [release_id],
            "run_id": [run_id],
            "published_at": [datetime.now(UTC)],
            "table_versions": [json.dumps(versions, sort_keys=True)],
        },
        schema=GOLD_RELEASES_SCHEMA,
    )
    path = gold_releases_path(lake)
    path.mkdir(parents=True, exist_ok=True)
    write_deltalake(str(path), row, mode="append")
    return release_id


def releases(lake: Lake) -> list[dict]:
    """Every recorded release, oldest first (table_versions parsed)."""
    table = open_delta(gold_releases_path(lake))
    if table is None:
        return []
    rows = table.to_pyarrow_table().to_pylist()
    rows.sort(key=lambda r: (r["published_at"], r["release_id"]))
    for row in rows:
        row["table_versions"] = {k: int(v) for k, v in json.loads(row["table_versions"]).items()}
    return rows


def latest_release(lake: Lake) -> dict[str, int] | None:
    """``{table: Delta version}`` of the latest gold release, or None before the first."""
    all_releases = releases(lake)
    return all_releases[-1]["table_versions"] if all_releases else None


def gold_release_tables(lake: Lake) -> dict[str, DeltaTable]:
    """Each gold table of the latest release, opened at the release's version.

    Empty before the first release. Readers using these never see a mix of tables from
    two publishes, even while a publish is writing.
    """
    versions = latest_release(lake) or {}
    return {name: DeltaTable(str(lake.gold / name), version=v) for name, v in versions.items()}


def register_gold_release(con: duckdb.DuckDBPyConnection, lake: Lake, schema: str = "gold") -> list[str]:
    """Create views ``<schema>.<table>`` over the latest release's snapshots.

    Returns the names of the views created (none before the first release).
    """
    tables = gold_release_tables(lake)
    if tables:
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    for name, table in tables.items():
        con.execute(f'CREATE OR REPLACE VIEW "{schema}"."{name}" AS {snapshot_view_sql(table)}')
    return list(tables)
