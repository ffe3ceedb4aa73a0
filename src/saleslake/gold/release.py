"""The gold release catalog: which Delta version of each gold table belongs together.

A publish (:mod:`saleslake.gold.publish`) writes every gold table, then appends one row
to ``system/gold_releases`` with the Delta version of each. Readers open the tables at
the versions of the latest release, so they never mix new facts with old dimensions
while a publish is half done::

    from saleslake.gold.release import gold_release_tables, register_gold_release

    tables = gold_release_tables(lake)          # {"fact_sales": DeltaTable(..., version=v), ...}
    register_gold_release(con, lake)            # DuckDB views gold.<table> over the release
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
from deltalake import DeltaTable

from saleslake.lake import Lake, TableLocation, open_delta, read_delta, snapshot_view_sql, write_delta

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

GOLD_RELEASES_SCHEMA = pa.schema(
    [
        ("release_id", pa.string()),
        ("run_id", pa.string()),
        ("published_at", pa.timestamp("us", tz="UTC")),
        ("table_versions", pa.string()),  # JSON {table: Delta version}
    ]
)


def gold_releases_path(lake: Lake) -> TableLocation:
    return lake.gold_releases


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
    write_delta(path, row, mode="append")
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
    return {name: read_delta(lake.gold_table(name), v) for name, v in versions.items()}


def register_gold_release(con: duckdb.DuckDBPyConnection, lake: Lake, schema: str = "gold") -> list[str]:
    """Create views ``<schema>.<table>`` over the latest release's snapshots.

    Returns the names of the views created (none before the first release). On a lake in
    a bucket the views read its objects: s3fs is registered on ``con``.
    """
    tables = gold_release_tables(lake)
    lake.register_filesystem(con)
    if tables:
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    for name, table in tables.items():
        con.execute(f'CREATE OR REPLACE VIEW "{schema}"."{name}" AS {snapshot_view_sql(table)}')
    return list(tables)
