"""Named crash points: the places where a ``kill -9`` must leave a lake that the next run
repairs (before and after each commit, between gold tables, inside the dbt build, ...).

``crash_point("silver.sales_lines.after_commit")`` marks one. It does nothing (one
boolean test) unless a test armed the process through one of two TEST-ONLY environment
variables, read once at import:

- ``SALESLAKE_TESTONLY_CRASH_AT=<point>:<n>``: the process SIGKILLs itself at the n-th
  pass of that point (``os.kill(os.getpid(), SIGKILL)``: no ``finally``, no ``atexit``,
  nothing flushed, exactly a ``kill -9``). A name that is not in :data:`POINTS` or a
  malformed value raises ValueError, so a typo never passes silently.
- ``SALESLAKE_TESTONLY_CRASH_LOG=<file>``: every pass appends ``<point>\\t<n>`` to that
  file (before a kill, so the last line of a killed process names where it died).

Never set them in production. ``tests/slow/test_crash_points.py`` kills every command at
every point and compares the lake with an uninterrupted run; :data:`POINTS` is the
registry it enumerates (a unit test checks that it matches the calls in the code).
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass

CRASH_AT_ENV = "SALESLAKE_TESTONLY_CRASH_AT"
CRASH_LOG_ENV = "SALESLAKE_TESTONLY_CRASH_LOG"


@dataclass(frozen=True)
class CrashPoint:
    name: str
    # the commands that pass it in a normal run; the crash test kills the first one there
    commands: tuple[str, ...]
    state: str  # what is done and what is not when a process dies there


_RUN = ("run", "rebuild gold")
_REBUILD = ("rebuild gold", "run")


def _points(*points: CrashPoint) -> dict[str, CrashPoint]:
    return {p.name: p for p in points}


#: Every crash point, by name.
POINTS: dict[str, CrashPoint] = _points(
    # landing (bronze.py)
    CrashPoint("bronze.object_written", ("ingest csv",), "one file's bronze object written, no manifest row yet"),
    CrashPoint("bronze.manifest.before_commit", ("ingest csv",), "every object written, manifest not committed"),
    CrashPoint("bronze.manifest.after_commit", ("ingest csv",), "manifest committed, ledger row not written"),
    # CSV silver (silver/process.py, lake.py)
    CrashPoint("silver.quarantine.before_commit", ("run",), "a chunk checked, its quarantine rows not committed"),
    CrashPoint("silver.quarantine.after_commit", ("run",), "a chunk's quarantine committed, its lines not"),
    CrashPoint("silver.sales_lines.before_commit", ("run",), "a chunk's lines classified, not committed"),
    CrashPoint("lake.replace_files.before_commit", ("run",), "rewritten silver files moved in, not committed"),
    CrashPoint("silver.sales_lines.after_commit", ("run",), "a chunk's lines committed, next chunk not started"),
    CrashPoint("run.after_silver", _RUN, "silver done and recorded, gold not started"),
    # gold (gold/build.py, gold/publish.py, dbt callbacks below)
    CrashPoint("gold.build.before_dbt", _RUN, "warehouse state and silver views prepared, dbt not started"),
    CrashPoint("gold.dbt.after_staging_model", _REBUILD, "a staging view built (full builds only)"),
    CrashPoint("gold.dbt.after_intermediate_model", _RUN, "an intermediate table built"),
    CrashPoint("gold.dbt.after_mart_model", _RUN, "a gold mart built in the warehouse"),
    CrashPoint("gold.dbt.after_test", _REBUILD, "a dbt test passed"),
    CrashPoint("gold.build.after_dbt", _REBUILD, "dbt build done, full-build mark not cleared"),
    CrashPoint("gold.publish.fact_merged", ("run",), "fact changes merged into Delta (incremental), no release"),
    CrashPoint("gold.publish.after_table", _RUN, "a gold Delta table published, later ones and release not"),
    CrashPoint("gold.publish.before_release", _REBUILD, "every gold Delta table published, release not recorded"),
    CrashPoint("gold.publish.after_release", _REBUILD, "release recorded, warehouse pending work not cleared"),
    CrashPoint("run.before_gold_record", _RUN, "gold released, ledger gold row not written"),
    # point-of-sale stream (stream.py)
    CrashPoint("stream.bronze.before_commit", ("stream",), "a batch polled, nothing of it committed"),
    CrashPoint("stream.bronze.after_commit", ("stream",), "a batch's bronze events committed, quarantine not"),
    CrashPoint("stream.quarantine.after_commit", ("stream",), "a batch's quarantine committed, lines not"),
    CrashPoint("stream.line_keys.after_commit", ("stream",), "a batch's line keys indexed, its lines not"),
    CrashPoint("stream.sales_lines.after_commit", ("stream",), "a batch's lines committed, Kafka offsets not"),
    # operational extract (sources/postgres.py, api.py, silver/oltp.py)
    CrashPoint("oltp.extract.table_written", ("ingest postgres",), "a table's bronze Parquet written, others not"),
    CrashPoint("oltp.extract.done", ("ingest postgres",), "the extract in bronze, no position written"),
    CrashPoint("oltp.positions.after_commit", ("ingest postgres",), "positions committed, silver not"),
    CrashPoint("oltp.reference.after_commit", ("ingest postgres",), "reference states committed, lines not"),
    CrashPoint("oltp.quarantine.after_commit", ("ingest postgres",), "quarantine committed, lines not"),
    CrashPoint("oltp.sales_lines.after_commit", ("ingest postgres",), "silver committed, ledger row not written"),
    # warehouse publish (serve/postgres.py, api.py)
    CrashPoint("publish_postgres.after_staging", ("publish postgres",), "changes staged and committed, no swap"),
    CrashPoint("publish_postgres.before_commit", ("publish postgres",), "swap and log row done, not committed"),
    CrashPoint("publish_postgres.after_commit", ("publish postgres",), "swap committed, staged tables not dropped"),
    CrashPoint("publish_postgres.before_ledger", ("publish postgres",), "published, lake ledger row not written"),
    # moving a lake (pipeline/copy_lake.py; killed by tests/integration/pipeline/test_copy_lake.py)
    CrashPoint("copy_lake.object_copied", ("copy-lake",), "a data or bronze object copied, no Delta log yet"),
    CrashPoint("copy_lake.log_copied", ("copy-lake",), "a table's log copied up to a version, not verified"),
)

#: The dbt node kinds that pass a crash point when dbt finishes one (see dbt_callbacks).
DBT_POINTS = {
    "staging": "gold.dbt.after_staging_model",
    "intermediate": "gold.dbt.after_intermediate_model",
    "marts": "gold.dbt.after_mart_model",
    "test": "gold.dbt.after_test",
}


def parse_crash_at(value: str) -> tuple[str, int]:
    """``"<point>:<n>"`` → (point, n); ValueError naming the problem otherwise."""
    name, sep, count = value.rpartition(":")
    if not sep or not count.isdigit() or int(count) < 1:
        raise ValueError(f"{CRASH_AT_ENV}={value!r}: expected <point>:<n> with n >= 1")
    if name not in POINTS:
        raise ValueError(f"{CRASH_AT_ENV}={value!r}: no crash point {name!r} (see saleslake.crashpoints.POINTS)")
    return name, int(count)


_TARGET = parse_crash_at(os.environ[CRASH_AT_ENV]) if os.environ.get(CRASH_AT_ENV) else None
_LOG = os.environ.get(CRASH_LOG_ENV) or None
_ARMED = _TARGET is not None or _LOG is not None
_passes: dict[str, int] = {}
_lock = threading.Lock()


def crash_point(name: str) -> None:
    """Mark crash point ``name`` (a key of :data:`POINTS`); free unless a test armed it."""
    if _ARMED:
        _pass(name)


def _pass(name: str) -> None:
    with _lock:  # points are passed from threads too (landing, dbt)
        count = _passes[name] = _passes.get(name, 0) + 1
        if _LOG is not None:
            fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{name}\t{count}\n".encode())
            finally:
                os.close(fd)
        if (name, count) == _TARGET:
            os.kill(os.getpid(), signal.SIGKILL)


def dbt_callbacks() -> list:
    """Callbacks for ``dbtRunner``: a ``gold.dbt.*`` point each time dbt finishes a node
    (empty unless armed, so dbt pays nothing for them)."""
    return [_dbt_event] if _ARMED else []


def _dbt_event(msg) -> None:
    if msg.info.name != "NodeFinished":
        return
    node = msg.data.node_info
    if node.node_status not in ("success", "pass"):
        return
    kind = "test" if node.resource_type == "test" else node.node_path.split("/", 1)[0]
    if kind in DBT_POINTS:
        crash_point(DBT_POINTS[kind])
