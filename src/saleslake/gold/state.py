"""The bookkeeping that makes gold incremental and crash safe, kept in the warehouse file
(schema ``gold_state``) next to the tables it describes.

``gold_state.build`` (one row):

- ``project_hash``: digest of the dbt project (models, macros, dbt_project.yml), of
  :data:`FORMAT_VERSION`, of the DuckDB version that built the warehouse and of the
  settings gold's content depends on (the fraud rules' thresholds). Another digest (an
  upgrade, an edited model, other thresholds) forces a full build: incremental tables
  are only ever extended by the code and settings that created them (the fact's line
  fingerprints are DuckDB ``hash()`` values, stable within a version).
- ``full_build_pending``: set before a full dbt build starts, cleared when it succeeded;
  a build that dies or fails on the way leaves it set, so the next build is full again.
- ``overwrite_pending``: set with it, cleared when a release is recorded: the Delta
  tables must be overwritten (not merged into) to catch up with a full build.

``gold_state.silver_files`` lists the silver Parquet files (relative paths) whose lines
``int_pending_lines`` has compared, recorded in that model's transaction from
``gold_state.silver_files_now`` (this build's snapshot, written by build_gold): the next
build compares only the files added and removed since (see that model).

``gold_state.pending_versions`` holds the SCD2 validity intervals whose version the
dimensions changed (written by the dimensions' pre-hooks, see the dbt macros), and
``gold_state.pending_fraud`` the lines whose history fraud flags changed (written by
``int_fraud_lines``' pre-hook); with ``intermediate.int_pending_lines`` they are the
*pending work* of the unpublished builds.
Both are cleared only after a release is recorded (:func:`clear_pending`): a build that
dies after dbt changed the warehouse but before the release redoes, and republishes,
that work on the next build. Every step reading them is idempotent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import duckdb

#: Bump when the published layout changes without a change to the dbt project (e.g. the
#: Delta partitioning of fact_sales), to force one full build and overwrite.
FORMAT_VERSION = "2"

#: Relations an incremental build extends; if one is missing the build is full.
INCREMENTAL_RELATIONS: tuple[tuple[str, str], ...] = (
    ("gold", "fact_sales"),
    ("gold", "dim_customer"),
    ("gold", "dim_product"),
    ("gold", "dim_store"),
    ("gold", "agg_sales_daily"),
    ("intermediate", "int_pending_lines"),
    ("intermediate", "int_customer_days"),
    ("intermediate", "int_product_days"),
    ("intermediate", "int_store_days"),
    ("intermediate", "int_geography"),
    ("intermediate", "int_product_quantity_days"),
    ("intermediate", "int_fraud_lines"),
    ("gold_state", "pending_versions"),
    ("gold_state", "pending_fraud"),
)

_DDL = (
    'CREATE SCHEMA IF NOT EXISTS "gold_state"',
    'CREATE TABLE IF NOT EXISTS "gold_state"."build" ('
    "project_hash VARCHAR, full_build_pending BOOLEAN, overwrite_pending BOOLEAN)",
    'CREATE TABLE IF NOT EXISTS "gold_state"."pending_versions" ('
    "dimension VARCHAR, natural_key VARCHAR, valid_from DATE, valid_to DATE)",
    'CREATE TABLE IF NOT EXISTS "gold_state"."pending_fraud" (line_key VARCHAR, order_date DATE)',
    'CREATE TABLE IF NOT EXISTS "gold_state"."silver_files" (path VARCHAR)',
    'CREATE TABLE IF NOT EXISTS "gold_state"."silver_files_now" (path VARCHAR)',
)


@dataclass(frozen=True)
class BuildState:
    project_hash: str | None
    full_build_pending: bool
    overwrite_pending: bool


def project_hash(project_dir: Path, settings_digest: str = "") -> str:
    """Digest of the dbt project files and of the settings (``settings_digest``) that
    define gold's content."""
    digest = hashlib.sha256(f"{FORMAT_VERSION}\0{duckdb.__version__}\0{settings_digest}".encode())
    files = [project_dir / "dbt_project.yml"]
    for sub in ("models", "macros"):
        files += sorted(p for p in (project_dir / sub).rglob("*") if p.is_file())
    for path in files:
        digest.update(str(path.relative_to(project_dir)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def silver_files(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {path for (path,) in con.execute('SELECT path FROM "gold_state"."silver_files"').fetchall()}


def has_pending_lines(con: duckdb.DuckDBPyConnection) -> bool:
    if "intermediate.int_pending_lines" in missing_relations(con):
        return False
    return bool(con.execute('SELECT count(*) FROM "intermediate"."int_pending_lines"').fetchall()[0][0])


def set_silver_files_now(con: duckdb.DuckDBPyConnection, paths: list[str]) -> None:
    con.execute("BEGIN TRANSACTION")
    con.execute('DELETE FROM "gold_state"."silver_files_now"')
    if paths:
        con.executemany('INSERT INTO "gold_state"."silver_files_now" VALUES (?)', [[p] for p in paths])
    con.execute("COMMIT")


def prepare(con: duckdb.DuckDBPyConnection) -> None:
    """Create the state tables (idempotent)."""
    for statement in _DDL:
        con.execute(statement)


def read(con: duckdb.DuckDBPyConnection) -> BuildState:
    rows = con.execute(
        'SELECT project_hash, full_build_pending, overwrite_pending FROM "gold_state"."build"'
    ).fetchall()
    if not rows:
        return BuildState(None, True, True)
    project, full, overwrite = rows[0]
    return BuildState(project, bool(full), bool(overwrite))


def _write(con: duckdb.DuckDBPyConnection, state: BuildState) -> None:
    con.execute("BEGIN TRANSACTION")
    con.execute('DELETE FROM "gold_state"."build"')
    con.execute(
        'INSERT INTO "gold_state"."build" VALUES (?, ?, ?)',
        [state.project_hash, state.full_build_pending, state.overwrite_pending],
    )
    con.execute("COMMIT")


#: Views an incremental build does not recreate (their SQL only changes with the project).
STAGING_VIEWS: tuple[tuple[str, str], ...] = (
    ("staging", "stg_sales_lines"),
    ("staging", "stg_customer_observations"),
    ("staging", "stg_product_observations"),
    ("staging", "stg_store_observations"),
)


def missing_relations(con: duckdb.DuckDBPyConnection) -> list[str]:
    present = {
        (schema, name)
        for schema, name in con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database() "
            "UNION ALL "
            "SELECT schema_name, view_name FROM duckdb_views() WHERE database_name = current_database()"
        ).fetchall()
    }
    wanted = INCREMENTAL_RELATIONS + STAGING_VIEWS
    return [f"{schema}.{name}" for schema, name in wanted if (schema, name) not in present]


def incremental_possible(con: duckdb.DuckDBPyConnection, current_hash: str) -> bool:
    """True when the warehouse holds a complete gold built by this project version."""
    state = read(con)
    return state.project_hash == current_hash and not state.full_build_pending and not missing_relations(con)


def start_full_build(con: duckdb.DuckDBPyConnection, current_hash: str) -> None:
    """Record, before dbt starts, that a full build (and an overwrite) is due."""
    con.execute('DELETE FROM "gold_state"."pending_versions"')
    con.execute('DELETE FROM "gold_state"."pending_fraud"')
    _write(con, BuildState(current_hash, True, True))


def full_build_done(con: duckdb.DuckDBPyConnection) -> None:
    state = read(con)
    _write(con, BuildState(state.project_hash, False, state.overwrite_pending))


def clear_pending(con: duckdb.DuckDBPyConnection) -> None:
    """After a release is recorded: nothing is left to recompute or republish."""
    state = read(con)
    con.execute("BEGIN TRANSACTION")
    con.execute('DELETE FROM "gold_state"."pending_versions"')
    con.execute('DELETE FROM "gold_state"."pending_fraud"')
    if "intermediate.int_pending_lines" not in missing_relations(con):
        con.execute('DELETE FROM "intermediate"."int_pending_lines"')
    con.execute('DELETE FROM "gold_state"."build"')
    con.execute(
        'INSERT INTO "gold_state"."build" VALUES (?, ?, ?)',
        [state.project_hash, state.full_build_pending, False],
    )
    con.execute("COMMIT")
