"""Build the gold star schema (CONTRACT §5) from silver with the dbt project shipped in
this package, test it, and publish it as Delta tables.

Usage::

    from saleslake.config import load_settings
    from saleslake.gold.build import build_gold
    from saleslake.lake import Lake

    result = build_gold(Lake("lakehouse"), load_settings(), run_id="r1")
    result.tables        # {"fact_sales": 1000000, "dim_customer": ..., ...}
    result.versions      # {"fact_sales": 3, ...}: Delta versions of the published release
    result.fact_changes  # {"mode": "incremental", "recomputed": 10412, "deleted": 3, ...}

Steps: the committed snapshot of ``silver.sales_lines`` is registered as a view in the
warehouse file (``lake.warehouse``); ``dbt build`` runs in-process (models and tests,
one DuckDB connection, the configured memory limit); then, unless ``publish=False``,
the marts are published to ``gold/<table>`` Delta tables and a release is recorded (see
:mod:`saleslake.gold.publish`). dbt writes its target/ and logs/ under ``lake.dbt``,
never inside the package. The warehouse file and ``lake.dbt`` are local files under
``lake.work`` (the home of a local lake); on a lake in a bucket, the views over silver
read its objects through s3fs, on dbt's connections too (dbt-duckdb's ``filesystems``).
A warehouse file that is missing (a new machine, a cleared cache) holds no build state,
so the next build is full and overwrites the published tables.

Builds are incremental: the fact, the SCD2 dimensions and the daily aggregate recompute
only what silver lines that are new, changed or gone since the last build can have
changed (see the dbt project's macros/incremental.sql), and the Delta fact receives only
those changes. The result is row for row what a full build gives (gold stays a pure
function of silver). A full build (``dbt build --full-refresh``, then Delta overwrites)
runs when ``full_refresh=True`` (``saleslake rebuild gold``), on the first build, after
the dbt project changed, or when a previous full build did not finish
(:mod:`saleslake.gold.state`).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
from deltalake import DeltaTable

from saleslake.config import Settings
from saleslake.connections.duckdb import session_settings
from saleslake.contract import SALES_LINES_SCHEMA
from saleslake.crashpoints import crash_point, dbt_callbacks
from saleslake.dbapi import one_row
from saleslake.errors import PipelineError
from saleslake.lake import Lake, duckdb_type_sql, open_delta, register_snapshots
from saleslake.storage import s3_filesystem, s3fs_options

from . import state
from .publish import FACT, publish_delta
from .release import GOLD_TABLES

#: The dbt project shipped as package data.
DBT_PROJECT_DIR = Path(__file__).parent / "dbt"
PROFILE_NAME = "saleslake"
TARGET_NAME = "warehouse"

# Environment that keeps dbt offline and quiet about tracking.
DBT_ENV = {
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "DO_NOT_TRACK": "1",
}

# dbt's in-process runner keeps global state: one invocation at a time per process.
_DBT_LOCK = threading.Lock()


@dataclass
class GoldResult:
    tables: dict[str, int] = field(default_factory=dict)  # row count per gold table
    versions: dict[str, int] = field(default_factory=dict)  # Delta version per published table
    seconds: float = 0.0
    # what the build did to fact_sales: mode "full" or "incremental"; recomputed and
    # deleted fact rows in the warehouse; publish "overwrite", "merge" or None (not
    # published), with the rows merged (upserts) and delete markers
    fact_changes: dict = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # seconds: prepare, dbt, publish


def build_gold(
    lake: Lake, settings: Settings, run_id: str, publish: bool = True, full_refresh: bool = False
) -> GoldResult:
    """Bring gold up to date with the committed silver snapshot, run the dbt tests, publish.

    Incremental unless ``full_refresh`` (or the warehouse cannot be extended, see
    :mod:`saleslake.gold.state`). Raises :class:`PipelineError` naming the failing
    models or tests when dbt fails; nothing is published then, and the pending work
    stays recorded for the next build.
    """
    started = time.perf_counter()
    plan = _plan_build(lake, settings, full_refresh)
    prepared = time.perf_counter()
    _run_dbt_build(lake, settings, plan)
    _record_build_done(lake, plan)
    timings = {"prepare": prepared - started, "dbt": time.perf_counter() - prepared}
    tables, fact_changes = gold_row_counts(lake), _fact_changes(lake, plan.full)
    versions: dict[str, int] = {}
    fact_changes.update(silver_diff=plan.silver_diff, publish=None)
    if publish:
        published = publish_delta(lake, run_id, settings)
        versions = published.versions
        fact_changes.update(
            publish=published.fact_mode, merged_upserts=published.fact_upserts, merged_deletes=published.fact_deletes
        )
        timings["publish"] = published.seconds
    return GoldResult(
        tables=tables,
        versions=versions,
        seconds=time.perf_counter() - started,
        fact_changes=fact_changes,
        timings=timings,
    )


@dataclass(frozen=True)
class _BuildPlan:
    """What a build does, decided before dbt runs, and what it records once dbt succeeded."""

    full: bool  # a full build (dbt --full-refresh), else incremental
    silver_diff: str  # how int_pending_lines compares silver: "files" or "full" (register_silver_diff)
    references: str  # fingerprint of the reference snapshots this build reads
    reference_changed: bool  # they changed since the last successful build (so the build is full)


def _plan_build(lake: Lake, settings: Settings, full_refresh: bool) -> _BuildPlan:
    """Register the silver snapshot and reference views dbt reads, and decide between a
    full and an incremental build (a full one is recorded as started, so a build that dies
    is full again)."""
    lake.work.mkdir(parents=True, exist_ok=True)
    silver = open_delta(lake.sales_lines)  # the committed snapshot this build reads
    # before the views are registered: a reference commit in between makes the next build full again
    references = reference_fingerprint(lake)
    register_silver(lake, silver)
    current = state.project_hash(DBT_PROJECT_DIR, gold_settings(settings))
    con = _warehouse(lake)
    try:
        state.prepare(con)
        reference_changed = _reference_changed(con, references)
        full = full_refresh or not state.incremental_possible(con, current) or reference_changed
        if full:
            state.start_full_build(con, current)
        silver_diff = register_silver_diff(con, lake, silver, full)
    finally:
        con.close()
    return _BuildPlan(full=full, silver_diff=silver_diff, references=references, reference_changed=reference_changed)


def _run_dbt_build(lake: Lake, settings: Settings, plan: _BuildPlan) -> None:
    """``dbt build``: every model and test, full or incremental as planned."""
    command = ["build"]
    # an incremental build keeps the staging views: their SQL only changes with the project
    command += ["--full-refresh"] if plan.full else ["--exclude", "config.materialized:view"]
    # An environment variable, not --vars: dbt re-parses the whole project when vars
    # change (~1.5 s), but only the two files that read an env var when it changes.
    crash_point("gold.build.before_dbt")
    run_dbt(lake, settings, command, env={"SALESLAKE_SILVER_DIFF": plan.silver_diff})
    crash_point("gold.build.after_dbt")


def _record_build_done(lake: Lake, plan: _BuildPlan) -> None:
    """After dbt succeeded: a full build is done (the next may be incremental), and the
    reference snapshots it read are the ones gold now reflects."""
    if plan.full:
        con = _warehouse(lake)
        try:
            state.full_build_done(con)
        finally:
            con.close()
    if plan.reference_changed:
        _store_reference_fingerprint(lake, plan.references)


def _fact_changes(lake: Lake, full: bool) -> dict:
    """Fact rows this build (and unpublished earlier ones) recomputed and deleted."""
    con = _warehouse(lake, read_only=True)
    try:
        if full:
            (rows,) = con.execute(f"SELECT count(*) FROM gold.{FACT}").fetchall()[0]
            return {"mode": "full", "recomputed": int(rows), "deleted": 0}
        recomputed, deleted = con.execute(
            """
            SELECT (SELECT count(*) FROM intermediate.int_fact_recompute),
                   (SELECT count(DISTINCT line_key) FROM intermediate.int_pending_lines
                    WHERE line_key NOT IN (SELECT line_key FROM intermediate.int_fact_recompute))
            """
        ).fetchall()[0]
        return {"mode": "incremental", "recomputed": int(recomputed), "deleted": int(deleted)}
    finally:
        con.close()


def register_silver(lake: Lake, silver: DeltaTable | None = None) -> None:
    """Persist the ``silver.*`` views dbt reads into the warehouse file (``silver``: the
    snapshot of ``lake.sales_lines`` to register; by default the latest).

    A silver table that was never created becomes an empty view with its contract
    schema, so gold builds (empty) instead of failing on a missing source.
    """
    if silver is None:
        silver = open_delta(lake.sales_lines)
    con = _warehouse(lake)
    try:
        if silver is not None:
            register_snapshots(con, {"silver.sales_lines": silver})
        else:
            nulls = ", ".join(f'CAST(NULL AS {typ}) AS "{name}"' for name, typ in duckdb_type_sql(SALES_LINES_SCHEMA))
            con.execute('CREATE SCHEMA IF NOT EXISTS "silver"')
            con.execute(f'CREATE OR REPLACE VIEW "silver"."sales_lines" AS SELECT {nulls} WHERE false')
        _register_reference(con, lake)
    finally:
        con.close()


def _register_reference(con: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    """``silver.reference_*`` views (reference states, SCD2 observations); empty ones
    with their schema when a table was never created."""
    from saleslake import reference

    con.execute('CREATE SCHEMA IF NOT EXISTS "silver"')
    for ref in (reference.CUSTOMERS, reference.PRODUCTS, reference.STORES):
        table = open_delta(ref.path(lake))
        if table is not None:
            register_snapshots(con, {f"silver.reference_{ref.name}": table})
        else:
            nulls = ", ".join(f'CAST(NULL AS {typ}) AS "{name}"' for name, typ in duckdb_type_sql(ref.schema))
            con.execute(f'CREATE OR REPLACE VIEW "silver"."reference_{ref.name}" AS SELECT {nulls} WHERE false')


def reference_fingerprint(lake: Lake) -> str:
    """Identity of the reference snapshots gold was built from (their file lists)."""
    import hashlib

    from saleslake import reference

    digest = hashlib.sha256()
    for ref in (reference.CUSTOMERS, reference.PRODUCTS, reference.STORES):
        table = open_delta(ref.path(lake))
        digest.update(f"{ref.name}:{sorted(table.file_uris()) if table is not None else None};".encode())
    return digest.hexdigest()


def _reference_changed(con: duckdb.DuckDBPyConnection, fingerprint: str) -> bool:
    """True when the reference tables changed since the last successful build: their
    states are SCD2 observations that pending lines do not cover, so gold is rebuilt."""
    con.execute('CREATE SCHEMA IF NOT EXISTS "gold_state"')
    con.execute('CREATE TABLE IF NOT EXISTS "gold_state"."reference_fingerprint" (fingerprint VARCHAR)')
    rows = con.execute('SELECT fingerprint FROM "gold_state"."reference_fingerprint"').fetchall()
    return not rows or rows[0][0] != fingerprint


def _store_reference_fingerprint(lake: Lake, fingerprint: str) -> None:
    con = _warehouse(lake)
    try:
        con.execute('DELETE FROM "gold_state"."reference_fingerprint"')
        con.execute('INSERT INTO "gold_state"."reference_fingerprint" VALUES (?)', [fingerprint])
    finally:
        con.close()


def register_silver_diff(con: duckdb.DuckDBPyConnection, lake: Lake, silver: DeltaTable | None, full: bool) -> str:
    """Record this build's silver files and register the views of the files added and
    removed since the previous build (``silver.sales_lines_added`` / ``_removed``).

    Returns how int_pending_lines compares silver: ``"files"`` (only those files) or
    ``"full"`` (every line against the fact: on a full build, when the previous file
    list is unknown, when a removed file is no longer on disk (e.g. vacuumed), or when
    lines are still pending from a build that was not published).
    """
    table = silver
    uris = table.file_uris() if table is not None else []
    current = {os.path.relpath(uri, lake.sales_lines.uri): uri for uri in uris}
    state.set_silver_files_now(con, sorted(current))
    previous = state.silver_files(con)
    if full or table is None or not previous or state.has_pending_lines(con):
        return "full"
    removed = [f"{lake.sales_lines.uri}/{path}" for path in sorted(previous - set(current))]
    if not _all_exist(lake, removed):
        return "full"
    added = [current[path] for path in sorted(set(current) - previous)]
    schema = pa.schema(table.schema())
    partitioned = bool(table.metadata().partition_columns)
    con.execute('CREATE SCHEMA IF NOT EXISTS "silver"')
    for name, files in (("sales_lines_added", added), ("sales_lines_removed", removed)):
        con.execute(f'CREATE OR REPLACE VIEW "silver"."{name}" AS {_parquet_view_sql(schema, files, partitioned)}')
    return "files"


def _all_exist(lake: Lake, uris: list[str]) -> bool:
    """Whether every one of the lake's files ``uris`` is still there (not vacuumed)."""
    if lake.is_local:
        return all(Path(uri).is_file() for uri in uris)
    if not uris:
        return True
    fs = s3_filesystem(lake.storage)
    return all(fs.isfile(uri) for uri in uris)


def _parquet_view_sql(schema: pa.Schema, files: list[str], partitioned: bool) -> str:
    """A SELECT over Parquet files of a Delta table, typed like lake.snapshot_view_sql."""
    columns = duckdb_type_sql(schema)
    if not files:
        nulls = ", ".join(f'CAST(NULL AS {typ}) AS "{name}"' for name, typ in columns)
        return f"SELECT {nulls} WHERE false"
    select_list = ", ".join(f'CAST("{name}" AS {typ}) AS "{name}"' for name, typ in columns)
    file_list = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    return (
        f"SELECT {select_list} FROM read_parquet([{file_list}], "
        f"hive_partitioning = {str(partitioned).lower()}, hive_types_autocast = false, union_by_name = true)"
    )


#: The environment variable that hands the fraud thresholds to the dbt models
#: (macros/fraud.sql: fraud_setting).
FRAUD_ENV = "SALESLAKE_GOLD_FRAUD"


def gold_settings(settings: Settings) -> str:
    """The settings gold's content depends on, as JSON: the history fraud rules'
    thresholds (CONTRACT §7). Part of the project hash, so other thresholds rebuild gold."""
    f = settings.fraud
    return json.dumps(
        {
            "velocity_max_transactions": f.velocity_max_transactions,
            "velocity_window_seconds": f.velocity_window_seconds,
            "quantity_norm_multiple": str(f.quantity_norm_multiple),
            "quantity_norm_min_lines": f.quantity_norm_min_lines,
            "quantity_norm_days": f.quantity_norm_days,
        },
        sort_keys=True,
    )


def dbt_profile(lake: Lake, settings: Settings) -> dict:
    """The dbt profile: DuckDB on the warehouse file, one dbt thread."""
    # Gold tables are sets: not preserving insertion order lets DuckDB write them in
    # parallel (fact_sales at 10M rows: 13 s -> 9 s on 2 cores).
    # Silver's Parquet files are immutable: cache their footers across the models.
    duck_settings = session_settings(
        settings, lake, TimeZone="UTC", preserve_insertion_order=False, parquet_metadata_cache=True
    )
    output = {
        "type": "duckdb",
        "path": str(lake.warehouse),
        "schema": "main",
        "threads": 1,
        # one handle for the whole build: closing the file after every node
        # (keep_open false) checkpointed it ~70 times per build (+1 % of a
        # 10M-line lake: dbt 10.3 s -> 8.2 s). run_dbt closes it when dbt ends.
        "keep_open": True,
        "settings": duck_settings,
    }
    if not lake.is_local:
        output["filesystems"] = [_dbt_filesystem(lake)]
    return {PROFILE_NAME: {"target": TARGET_NAME, "outputs": {TARGET_NAME: output}}}


#: Variables through which dbt's profile reads the lake's S3 key pair (run_dbt sets them
#: for the build only). dbt scrubs the values of ``DBT_ENV_SECRET_*`` variables from its
#: logs and output; the profile file holds only their names.
DBT_S3_KEY_ID_ENV = "DBT_ENV_SECRET_SALESLAKE_S3_ACCESS_KEY_ID"
DBT_S3_SECRET_ENV = "DBT_ENV_SECRET_SALESLAKE_S3_SECRET_ACCESS_KEY"


def _dbt_filesystem(lake: Lake) -> dict:
    """dbt-duckdb's ``filesystems`` entry: s3fs on dbt's own DuckDB connections, so the
    silver views of the warehouse read the lake's objects (DuckDB cannot download httpfs).
    Without a key pair in the settings s3fs takes the standard AWS chain."""
    entry: dict = {"fs": "s3", **s3fs_options(lake.storage)}
    if lake.storage.credentials() is not None:
        entry["key"] = "{{ env_var('" + DBT_S3_KEY_ID_ENV + "') }}"
        entry["secret"] = "{{ env_var('" + DBT_S3_SECRET_ENV + "') }}"
    return entry


def _dbt_secrets(lake: Lake) -> dict[str, str]:
    """The variables :func:`_dbt_filesystem` names, for the duration of a dbt run."""
    credentials = None if lake.is_local else lake.storage.credentials()
    if credentials is None:
        return {}
    return {DBT_S3_KEY_ID_ENV: credentials.access_key_id, DBT_S3_SECRET_ENV: credentials.secret_access_key}


def dbt_dirs(lake: Lake) -> tuple[Path, Path]:
    """(target path, log path) of dbt runs on this lake."""
    return lake.dbt / "target", lake.dbt / "logs"


@contextmanager
def _dbt_environment(extra: dict[str, str]) -> Iterator[None]:
    values = {**DBT_ENV, **extra}
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_dbt(lake: Lake, settings: Settings, command: list[str], env: dict[str, str] | None = None) -> object:
    """Run a dbt command (e.g. ``["build"]``) in-process on this lake's warehouse, with
    ``env`` added to the environment for its duration.

    Returns dbt's result object; raises :class:`PipelineError` when dbt fails.
    """
    from dbt.cli.main import dbtRunner  # slow import: only when gold is built

    target_path, log_path = dbt_dirs(lake)
    target_path.mkdir(parents=True, exist_ok=True)
    log_path.mkdir(parents=True, exist_ok=True)
    environment = {FRAUD_ENV: gold_settings(settings), **_dbt_secrets(lake), **(env or {})}
    with _DBT_LOCK, _dbt_environment(environment), tempfile.TemporaryDirectory(prefix="saleslake-dbt-") as profiles_dir:
        # JSON is YAML: no quoting surprises in paths.
        (Path(profiles_dir) / "profiles.yml").write_text(json.dumps(dbt_profile(lake, settings), indent=2))
        args = [
            *command,
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            profiles_dir,
            "--target-path",
            str(target_path),
            "--log-path",
            str(log_path),
            "--log-level",
            "none",  # nothing on stdout: failures become one PipelineError line
            "--no-use-colors",
            "--no-send-anonymous-usage-stats",
            "--no-version-check",
        ]
        try:
            outcome = dbtRunner(callbacks=dbt_callbacks()).invoke(args)
        except Exception as exc:  # dbt raises only on bugs; keep the message to one line
            raise PipelineError(f"gold build failed: {_one_line(exc)}") from exc
        finally:
            with suppress(Exception):
                _close_dbt_warehouse()
    if not outcome.success:
        raise PipelineError(f"{_failure_message(outcome)} (details: {log_path / 'dbt.log'})")
    return outcome.result


def _close_dbt_warehouse() -> None:
    """Close the warehouse file dbt-duckdb keeps open (``keep_open``), so the publish and
    readers in this process can open it with their own settings, and its last writes are
    checkpointed now. dbt-duckdb holds it in its connection manager's environment; its
    ``close_all_connections`` only drops the reference, so the environment is closed here."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    environment = getattr(DuckDBConnectionManager, "_ENV", None)
    DuckDBConnectionManager.close_all_connections()
    if environment is not None:
        environment.close()


def _failure_message(outcome: object) -> str:
    """One line naming the failing models and tests of a dbt result."""
    exception = getattr(outcome, "exception", None)
    result = getattr(outcome, "result", None)
    models: list[str] = []
    tests: list[str] = []
    for node_result in getattr(result, "results", None) or []:
        status = str(getattr(node_result, "status", "")).lower()
        if status not in ("error", "fail", "runtime error"):
            continue
        node = node_result.node
        if node.resource_type == "test":
            tests.append(node.name)
        else:
            reason = _one_line(getattr(node_result, "message", "") or "")
            models.append(f"{node.name} ({reason})" if reason else node.name)
    parts = []
    if models:
        parts.append("gold models failed: " + ", ".join(models))
    if tests:
        parts.append("gold tests failed: " + ", ".join(tests))
    if not parts:
        parts.append(f"gold build failed: {_one_line(exception) if exception else 'dbt reported failure'}")
    return "; ".join(parts)


def _one_line(value: object, limit: int = 300) -> str:
    lines = [line.strip() for line in str(value).splitlines() if line.strip()]
    text = " ".join(lines)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def gold_row_counts(lake: Lake) -> dict[str, int]:
    """Row count of every gold table in the warehouse."""
    con = _warehouse(lake, read_only=True)
    try:
        return {name: one_row(con.execute(f'SELECT count(*) FROM gold."{name}"'))[0] for name in GOLD_TABLES}
    finally:
        con.close()


def _warehouse(lake: Lake, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A connection to the warehouse file that reads the lake's objects (its silver
    views name them on a lake in a bucket)."""
    return lake.register_filesystem(duckdb.connect(str(lake.warehouse), read_only=read_only))
