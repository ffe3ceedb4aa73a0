"""Recent runs from the run ledger, newest first, with row accounting per stage
(CONTRACT §1: ``status --json``), live streams with their lag, and which runs were
interrupted (their last row says running, but nothing runs them any more)."""

from __future__ import annotations

import json
import socket

import psutil

from saleslake.lake import Lake
from saleslake.runs import ledger_rows, lock_is_free, stream_heartbeats

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


def run_status(lake: Lake, limit: int = 20) -> list[dict]:
    """The ``limit`` most recent runs: ``run_id``, ``command``, ``status``, ``started_at``,
    ``finished_at``, ``error``, ``stages`` (per stage its status, row counts and details)
    and, for a stream, ``stream`` (its heartbeat)."""
    runs = _runs(ledger_rows(lake))
    beats = {b["run_id"]: b for b in stream_heartbeats(lake)}
    lock_free = lock_is_free(lake)
    ordered = sorted(runs.values(), key=lambda e: (e["started_at"] is not None, e["started_at"]), reverse=True)
    for entry in ordered:
        beat = beats.get(entry["run_id"])
        if beat is not None:
            entry["stream"] = {k: beat[k] for k in STREAM_FIELDS}
        if entry["status"] == "running" and not _alive(entry, beat, lock_free):
            entry["status"] = "interrupted"
        entry.pop("_running", None)
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


def _alive(entry: dict, beat: dict | None, lock_free: bool) -> bool:
    """Whether a run recorded as running still runs: a stream while its heartbeat is
    fresh; a command that holds the lake's lock while the lock is held; one that does not
    (a warehouse publish) while its process lives on this host (another host's: assumed)."""
    if beat is not None:
        return bool(beat["alive"])
    running = entry.get("_running") or {}
    if running.get("locked", True):
        return not lock_free
    if running.get("host") != socket.gethostname():
        return True
    return psutil.pid_exists(int(running.get("pid", 0)))
