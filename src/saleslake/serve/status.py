"""Recent runs from the run ledger, newest first, with row accounting per stage
(CONTRACT §1: ``status --json``), live streams with their lag, and which runs were
interrupted (their last row says running, but nothing runs them any more) or are stale
(running on another host, with no sign of life for :data:`STALE_AFTER`)."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta

import psutil

from saleslake.lake import Lake
from saleslake.runs import ledger_rows, lock_holder, stream_heartbeats, utcnow

STAGE_ORDER = {"bronze": 0, "silver": 1, "gold": 2}
STREAM_FIELDS = (
    "topic",
    "group_id",
    "updated_at",
    "batches",
    "records",
    "positions",
    "lag",
    "total_lag",
    "gold_refreshes",
    "alive",
)

#: How long a run that this host cannot check (one without the lake's lock, recorded by
#: another host) may go without a sign of life (a ledger row, a stream heartbeat) before
#: status calls it stale instead of running. Far above a stream's 5 s beat, and above a
#: stream batch with its gold refresh; a warehouse publish writes rows only as its stages
#: end, so a publish longer than this shows as stale (with its silence) until it ends.
STALE_AFTER = timedelta(minutes=15)


def run_status(lake: Lake, limit: int = 20) -> list[dict]:
    """The ``limit`` most recent runs: ``run_id``, ``command``, ``status``, ``started_at``,
    ``finished_at``, ``error``, ``stages`` (per stage its status, row counts and details)
    and, for a stream, ``stream`` (its heartbeat); a stale run has ``stale_seconds``, how
    long it has been silent."""
    runs = _runs(ledger_rows(lake))
    beats = {b["run_id"]: b for b in stream_heartbeats(lake)}
    holder = lock_holder(lake)
    now = utcnow()
    ordered = sorted(runs.values(), key=lambda e: (e["started_at"] is not None, e["started_at"]), reverse=True)
    for entry in ordered:
        beat = beats.get(entry["run_id"])
        if beat is not None:
            entry["stream"] = {k: beat[k] for k in STREAM_FIELDS}
        if entry["status"] == "running":
            entry["status"] = _running_state(entry, beat, holder, now)
            if entry["status"] == "stale":
                entry["stale_seconds"] = int((now - _last_sign_of_life(entry, beat)).total_seconds())
        entry.pop("_running", None)
        entry.pop("_last_row", None)
        for key in ("started_at", "finished_at"):
            if entry[key] is not None:
                entry[key] = entry[key].isoformat()
    return ordered[:limit]


def _runs(rows: list[dict]) -> dict[str, dict]:
    runs: dict[str, dict] = {}
    for r in rows:
        entry = runs.setdefault(
            r["run_id"],
            {
                "run_id": r["run_id"],
                "command": r["command"],
                "status": None,
                "started_at": None,
                "finished_at": None,
                "error": None,
                "stages": {},
            },
        )
        if r["recorded_at"] is not None and (entry.get("_last_row") is None or r["recorded_at"] > entry["_last_row"]):
            entry["_last_row"] = r["recorded_at"]
        if r["stage"] == "run" or (r["command"].startswith("ingest") and entry["status"] is None):
            entry.update(status=r["status"], started_at=r["started_at"], finished_at=r["finished_at"], error=r["error"])
            entry["_running"] = json.loads(r["details"]) if r["details"] and r["status"] == "running" else {}
        if r["stage"] != "run":
            entry["stages"][r["stage"]] = {
                "status": r["status"],
                "rows_read": r["rows_read"],
                "rows_valid": r["rows_valid"],
                "rows_quarantined": r["rows_quarantined"],
                "rows_duplicate": r["rows_duplicate"],
                "rows_corrected": r["rows_corrected"],
                "details": json.loads(r["details"]) if r["details"] else None,
            }
    for entry in runs.values():
        entry["stages"] = dict(sorted(entry["stages"].items(), key=lambda kv: STAGE_ORDER.get(kv[0], 9)))
    return runs


def _running_state(entry: dict, beat: dict | None, holder: str | None, now: datetime) -> str:
    """What a run recorded as running is now: ``running``, ``interrupted`` (it surely runs
    no more) or ``stale`` (another host's run, silent for longer than STALE_AFTER).

    A command that takes the lake's lock runs while it holds the lock (the lock names its
    holder, so another run's lock does not keep a dead run running). One that does not (a
    stream, a warehouse publish) runs while its process lives, when it is on this host;
    another host's is believed while it shows signs of life."""
    running = entry.get("_running") or {}
    if running.get("locked", True) and beat is None:
        return "running" if holder == entry["run_id"] else "interrupted"
    if running.get("host", socket.gethostname()) == socket.gethostname():
        if beat is not None and not beat["alive"]:
            return "interrupted"
        return "running" if _process_runs_it(running, entry["started_at"]) else "interrupted"
    return "running" if now - _last_sign_of_life(entry, beat) <= STALE_AFTER else "stale"


def _process_runs_it(running: dict, started_at: datetime | None) -> bool:
    """The recorded pid lives and started before the run did (not a reused pid)."""
    try:
        process = psutil.Process(int(running.get("pid", 0)))
        created = process.create_time()
        alive = process.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, ValueError, TypeError):
        return False
    # one second of slack: create_time is rounded to the clock tick
    return alive and (started_at is None or created <= started_at.timestamp() + 1.0)


def _last_sign_of_life(entry: dict, beat: dict | None) -> datetime:
    """The newest of its ledger rows and its stream heartbeat."""
    seen = [t for t in (entry.get("_last_row"), entry["started_at"]) if t is not None]
    if beat is not None and beat.get("updated_at"):
        seen.append(datetime.fromisoformat(beat["updated_at"]))
    return max(seen) if seen else datetime.min.replace(tzinfo=UTC)
