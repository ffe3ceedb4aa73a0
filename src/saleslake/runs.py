"""The run ledger and the lake's write lock.

The lock is an ``flock`` on ``home/.lock``: the kernel releases it when the holder dies,
so a kill -9 never leaves a stale lock. The ledger is an append-only Delta table: a run
appends one row when it starts and one per stage as it ends; readers take the latest
row per (run_id, stage). A run whose last row says "running" but whose lock is free was
interrupted.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import pyarrow as pa

from saleslake.errors import LockBusyError
from saleslake.lake import Lake, open_delta, snapshot_connection, snapshot_view_sql, write_delta

RUNS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("command", pa.string()),
        ("stage", pa.string()),
        ("status", pa.string()),
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("finished_at", pa.timestamp("us", tz="UTC")),
        ("rows_read", pa.int64()),
        ("rows_valid", pa.int64()),
        ("rows_quarantined", pa.int64()),
        ("rows_duplicate", pa.int64()),
        ("rows_corrected", pa.int64()),
        ("error", pa.string()),
        ("details", pa.string()),
        ("recorded_at", pa.timestamp("us", tz="UTC")),
    ]
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_run_id() -> str:
    return utcnow().strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


@dataclass
class StageCounts:
    """Row accounting of one stage: read = valid + quarantined + duplicate."""

    rows_read: int = 0
    rows_valid: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    rows_corrected: int = 0

    def add(self, other: StageCounts) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    @property
    def balanced(self) -> bool:
        return self.rows_read == self.rows_valid + self.rows_quarantined + self.rows_duplicate


@dataclass
class StageRecord:
    stage: str
    status: str
    started_at: datetime
    finished_at: datetime | None = None
    counts: StageCounts = field(default_factory=StageCounts)
    error: str | None = None
    details: dict | None = None


class Ledger:
    """Appends run and stage rows to ``system/runs``."""

    def __init__(self, lake: Lake, run_id: str, command: str):
        self.lake, self.run_id, self.command = lake, run_id, command

    def record(self, record: StageRecord) -> None:
        row = {
            "run_id": self.run_id,
            "command": self.command,
            "stage": record.stage,
            "status": record.status,
            "started_at": record.started_at,
            "finished_at": record.finished_at,
            **asdict(record.counts),
            "error": record.error,
            "details": json.dumps(record.details, default=str) if record.details else None,
            "recorded_at": utcnow(),
        }
        table = pa.Table.from_pylist([row], schema=RUNS_SCHEMA)
        write_delta(self.lake.runs, table, mode="append")


def ledger_rows(lake: Lake) -> list[dict]:
    """The latest row per (run_id, stage), newest runs first."""
    table = open_delta(lake.runs)
    if table is None:
        return []
    con = snapshot_connection(lake)
    try:
        rel = con.sql(
            f"""
            WITH runs AS ({snapshot_view_sql(table)})
            SELECT * FROM runs
            QUALIFY row_number() OVER (PARTITION BY run_id, stage ORDER BY recorded_at DESC) = 1
            ORDER BY started_at DESC, run_id DESC
            """
        )
        return rel.to_arrow_table().to_pylist()
    finally:
        con.close()


@contextmanager
def lake_lock(lake: Lake, run_id: str, command: str, wait_seconds: float = 0.0) -> Iterator[None]:
    """Hold the lake's write lock; wait up to ``wait_seconds`` for it, then explain who holds it."""
    lake.home.mkdir(parents=True, exist_ok=True)
    fd = os.open(lake.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockBusyError(_holder_message(lake)) from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(
            fd,
            json.dumps(
                {
                    "run_id": run_id,
                    "pid": os.getpid(),
                    "command": command,
                    "since": utcnow().isoformat(timespec="seconds"),
                }
            ).encode(),
            0,
        )
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def lock_is_free(lake: Lake) -> bool:
    if not lake.lock_file.exists():
        return True
    fd = os.open(lake.lock_file, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def lock_holder(lake: Lake) -> str | None:
    """The run id of the run that holds the lake's lock, or None when the lock is free.
    The holder writes its id right after taking the lock and before its first ledger row,
    so a running row of another id is not the holder's."""
    if lock_is_free(lake):
        return None
    return str(_holder(lake).get("run_id", ""))


def _holder(lake: Lake) -> dict:
    try:
        return json.loads(lake.lock_file.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _holder_message(lake: Lake) -> str:
    holder = _holder(lake)
    who = f"run {holder.get('run_id', '?')} ({holder.get('command', '?')}, pid {holder.get('pid', '?')}, since {holder.get('since', '?')})"
    return f"another saleslake {who} is writing to {lake.home}; wait for it to finish or pass --wait SECONDS"


@contextmanager
def silver_commit_lock(lake: Lake) -> Iterator[None]:
    """Serialise commits to the silver tables between writers that run side by side (a
    CSV ``run`` and one or more ``stream`` consumers). Held only around a batch's
    dedup lookup and commits, so a stream waits at most one CSV chunk's commit."""
    lake.home.mkdir(parents=True, exist_ok=True)
    fd = os.open(lake.home / ".silver.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# -- stream heartbeats: a running stream rewrites its file (pipeline.stream); status reads them


def heartbeat_path(lake: Lake, run_id: str):
    return lake.home / "system" / "streams" / f"{run_id}.json"


def stream_heartbeats(lake: Lake) -> list[dict]:
    """Every stream's last heartbeat; ``alive`` tells whether its process still runs."""
    import psutil

    folder = lake.home / "system" / "streams"
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            beat = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        beat["alive"] = beat.get("state") == "running" and psutil.pid_exists(int(beat.get("pid", 0)))
        out.append(beat)
    return out
