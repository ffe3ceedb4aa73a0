"""The run ledger, the lake's write locks and the stream heartbeats.

On a local lake the lock is an ``flock`` on ``home/.lock``: the kernel releases it when the
holder dies, so a kill -9 never leaves a stale lock. A lake in a bucket has no kernel to
ask: the lock is a lease (:mod:`saleslake.storage.lease`) under ``_saleslake/lease/``,
renewed while held; a holder killed with kill -9 frees the lake when its lease expires
(``storage.lease_ttl_seconds``). :func:`lake_lock`, :func:`silver_commit_lock`,
:func:`lock_is_free` and :func:`lock_holder` choose by the lake, so callers never do.

The ledger is an append-only Delta table: a run appends one row when it starts and one per
stage as it ends; readers take the latest row per (run_id, stage). A run whose last row
says "running" but whose lock is free was interrupted.
"""

from __future__ import annotations

import fcntl
import functools
import json
import math
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pyarrow as pa

from saleslake.config import S3Credentials, StorageSettings
from saleslake.errors import LockBusyError
from saleslake.lake import Lake, open_delta, snapshot_connection, snapshot_view_sql, write_delta
from saleslake.storage import s3_filesystem
from saleslake.storage.lease import Lease, LeaseEntry, check_commit, guarding, held
from saleslake.storage.objects import LocalObjects, ObjectStore, S3Objects

if TYPE_CHECKING:
    import s3fs

#: where the silver commit lease of a lake in a bucket keeps its log (the run lease's is
#: ``storage.lease.PREFIX``)
SILVER_LEASE = "_saleslake/silver-lease"
#: the stream heartbeats, one object per stream run: ``<run_id>.json``
HEARTBEATS = "system/streams"

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


def lake_objects(lake: Lake) -> ObjectStore:
    """The lake's small objects (leases, heartbeats): files under a local lake's home, or
    objects under the bucket prefix."""
    if lake.location.local is not None:
        return LocalObjects(lake.location.local)
    root = "/".join(p for p in (lake.location.bucket, lake.location.prefix) if p)
    return S3Objects(_filesystem(lake.storage), root)


def _filesystem(storage: StorageSettings) -> s3fs.S3FileSystem:
    """One s3fs client per storage settings and credentials: a stream takes the silver
    lease every batch, and a new client costs more than the lease's requests."""
    return _filesystem_for(storage.model_dump_json(), storage.credentials())


@functools.lru_cache(maxsize=8)
def _filesystem_for(storage_json: str, credentials: S3Credentials | None) -> s3fs.S3FileSystem:
    return s3_filesystem(StorageSettings.model_validate_json(storage_json), credentials)


@contextmanager
def lake_lock(lake: Lake, run_id: str, command: str, wait_seconds: float = 0.0) -> Iterator[None]:
    """Hold the lake's write lock; wait up to ``wait_seconds`` for it, then explain who
    holds it (:class:`LockBusyError`). A lake in a bucket: its run lease, renewed while
    held; commits in the block check it first, so a run that lost it stops before its next
    commit (:class:`~saleslake.storage.lease.LeaseLostError`)."""
    if not lake.is_local:
        lease = Lease(lake_objects(lake), ttl=lake.storage.lease_ttl_seconds, run_id=run_id)
        with held(lease, command, wait_seconds), guarding(lake.location.uri, lease):
            yield
        return
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
    if not lake.is_local:
        return _lease_holder(lake) is None
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
    if not lake.is_local:
        entry = _lease_holder(lake)
        return None if entry is None else entry.run_id
    if lock_is_free(lake):
        return None
    return str(_holder(lake).get("run_id", ""))


def _lease_holder(lake: Lake) -> LeaseEntry | None:
    """The newest entry of a bucket lake's run lease while it holds the lake, else None."""
    entry = Lease(lake_objects(lake)).latest()
    return entry if entry is not None and entry.holds(time.time()) else None


def _holder(lake: Lake) -> dict:
    try:
        return json.loads(lake.lock_file.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _holder_message(lake: Lake) -> str:
    """Who holds the lake's lock, in one line (for a refusal, ``doctor`` and errors)."""
    if not lake.is_local:
        entry = _lease_holder(lake)
        return entry.held_message(time.time()) if entry else f"nobody holds the lease of {lake.location.uri} now"
    holder = _holder(lake)
    who = f"run {holder.get('run_id', '?')} ({holder.get('command', '?')}, pid {holder.get('pid', '?')}, since {holder.get('since', '?')})"
    return f"another saleslake {who} is writing to {lake.home}; wait for it to finish or pass --wait SECONDS"


@contextmanager
def silver_commit_lock(lake: Lake) -> Iterator[None]:
    """Serialise commits to the silver tables between writers that run side by side (a
    CSV ``run`` and one or more ``stream`` consumers). Held only around a batch's
    dedup lookup and commits, so a stream waits at most one CSV chunk's commit. Waits as
    long as it takes (as ``flock`` does).

    A lake in a bucket: a second lease, under :data:`SILVER_LEASE`, with a short time to
    live (``storage.silver_lease_ttl_seconds``): a writer killed mid-commit holds the
    others up that long. Not the run lease: a stream holds no run lock and commits beside a
    run. Entering checks the run lease this context holds (a run that lost it stops here,
    before its silver commit); commits in the block check both."""
    check_commit(lake.location.uri)
    if not lake.is_local:
        lease = Lease(lake_objects(lake), ttl=lake.storage.silver_lease_ttl_seconds, prefix=SILVER_LEASE)
        with held(lease, "silver commit", math.inf), guarding(lake.location.uri, lease):
            yield
        return
    lake.home.mkdir(parents=True, exist_ok=True)
    fd = os.open(lake.home / ".silver.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# -- stream heartbeats: a running stream rewrites its object (pipeline.stream); status reads them


def heartbeat_key(run_id: str) -> str:
    """Where a stream's heartbeat lives, relative to the lake's home."""
    return f"{HEARTBEATS}/{run_id}.json"


def write_heartbeat(lake: Lake, run_id: str, beat: dict) -> None:
    """Replace the stream's heartbeat with ``beat`` (with this host's name added): a
    reader sees the previous or the new one whole (a file renamed into place, one PUT)."""
    body = {**beat, "host": socket.gethostname()}
    lake_objects(lake).put(heartbeat_key(run_id), json.dumps(body, indent=1).encode())


def stream_heartbeats(lake: Lake) -> list[dict]:
    """Every stream's last heartbeat; ``alive`` tells whether its process still runs (a
    stream on another host, which this one cannot ask, is believed while it says so)."""
    import psutil

    objects = lake_objects(lake)
    here = socket.gethostname()
    out = []
    for key in objects.keys(HEARTBEATS):
        if not key.endswith(".json"):
            continue
        data = objects.read(key)
        try:
            beat = json.loads(data) if data is not None else None
        except ValueError:
            continue
        if not isinstance(beat, dict):
            continue
        running = beat.get("state") == "running"
        on_this_host = beat.get("host", here) == here
        beat["alive"] = running and (not on_this_host or psutil.pid_exists(int(beat.get("pid", 0))))
        out.append(beat)
    return out
