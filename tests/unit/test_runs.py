"""The run lock and the ledger."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from saleslake import api
from saleslake.errors import LockBusyError
from saleslake.runs import StageCounts, lake_lock, lock_is_free


def hold_lock(home, seconds: float) -> subprocess.Popen:
    code = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from saleslake.lake import Lake
        from saleslake.runs import lake_lock
        with lake_lock(Lake(Path({str(home)!r})), "holder-run", "run"):
            print("locked", flush=True)
            time.sleep({seconds})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_run_explains_who_holds_the_lock(lake, settings):
    holder = hold_lock(lake.home, 30)
    try:
        with pytest.raises(LockBusyError) as info:
            api.run(settings=settings)
        assert "holder-run" in str(info.value) and "--wait" in str(info.value)
        assert not lock_is_free(lake)
    finally:
        holder.kill()
        holder.wait()
    assert lock_is_free(lake)  # a killed holder never leaves a stale lock


def test_second_run_waits_when_asked(lake, settings):
    holder = hold_lock(lake.home, 1.5)
    started = time.monotonic()
    result = api.run(until="silver", settings=settings, wait_seconds=30)
    assert result.status == "succeeded" and time.monotonic() - started >= 1.0
    holder.wait()


def test_lock_is_reentrant_free_after_exit(lake):
    with lake_lock(lake, "a", "run"):
        assert not lock_is_free(lake)
    assert lock_is_free(lake)


def test_status_json_shape_and_interrupted_runs(lake, settings):
    api.run(until="silver", settings=settings)
    runs = api.status(settings=settings)
    assert runs[0]["status"] == "succeeded"
    for key in ("run_id", "status", "started_at", "finished_at"):
        assert key in runs[0]
    silver = runs[0]["stages"]["silver"]
    assert {"rows_read", "rows_valid", "rows_quarantined", "rows_duplicate"} <= set(silver)
    # a run that recorded "running" and died without releasing anything shows as interrupted
    from saleslake.runs import Ledger, StageRecord, utcnow

    Ledger(lake, "dead-run", "run").record(StageRecord("run", "running", utcnow()))
    assert api.status(settings=settings)[0]["status"] == "interrupted"


def test_stage_counts_balance():
    counts = StageCounts(rows_read=10, rows_valid=7, rows_quarantined=2, rows_duplicate=1)
    assert counts.balanced
    counts.add(StageCounts(rows_read=1, rows_valid=1))
    assert counts.rows_read == 11 and counts.balanced


def _running_row(lake, run_id: str, command: str, details: dict, minutes_ago: float, monkeypatch) -> None:
    """A ``running`` run row as ``command_run`` writes it, recorded ``minutes_ago``."""
    from datetime import timedelta

    from saleslake import runs
    from saleslake.runs import Ledger, StageRecord

    then = runs.utcnow() - timedelta(minutes=minutes_ago)
    with monkeypatch.context() as m:
        m.setattr(runs, "utcnow", lambda: then)
        Ledger(lake, run_id, command).record(StageRecord("run", "running", then, details=details))


def _status_line(settings, run_id: str) -> str:
    from typer.testing import CliRunner

    from saleslake import cli

    outcome = CliRunner().invoke(cli.app, ["status", "--home", str(settings.home)])
    assert outcome.exit_code == 0, outcome.output
    [line] = [t for t in outcome.stdout.splitlines() if t.startswith(run_id)]
    return line


def test_another_hosts_silent_run_shows_as_stale_with_its_silence(lake, settings, monkeypatch):
    other_host = {"pid": 1, "host": "another-host.example", "locked": False}
    _running_row(lake, "old-publish", "publish postgres", other_host, 125, monkeypatch)
    _running_row(lake, "new-publish", "publish postgres", other_host, 1, monkeypatch)
    states = {r["run_id"]: r for r in api.status(settings=settings)}
    assert states["old-publish"]["status"] == "stale" and 125 * 60 <= states["old-publish"]["stale_seconds"] < 130 * 60
    assert states["new-publish"]["status"] == "running" and "stale_seconds" not in states["new-publish"]
    assert "publish postgres  stale (silent 2h 05m)" in _status_line(settings, "old-publish")
    assert "publish postgres  running" in _status_line(settings, "new-publish")


def test_a_dead_run_is_not_kept_running_by_another_runs_lock(lake, settings):
    import socket

    from saleslake.runs import Ledger, StageRecord, utcnow

    here = {"pid": 1, "host": socket.gethostname(), "locked": True}
    Ledger(lake, "killed-run", "run").record(StageRecord("run", "running", utcnow(), details=here))
    with lake_lock(lake, "next-run", "run"):
        assert "run  interrupted" in _status_line(settings, "killed-run")


def test_stream_heartbeats_on_a_local_lake_are_files_replaced_whole(lake):
    import os
    import socket

    from saleslake.runs import stream_heartbeats, write_heartbeat

    assert stream_heartbeats(lake) == []  # no folder yet
    for records in (10, 20):
        write_heartbeat(lake, "s1", {"run_id": "s1", "pid": os.getpid(), "state": "running", "records": records})
    write_heartbeat(lake, "s0", {"run_id": "s0", "pid": os.getpid(), "state": "stopped", "records": 5})
    beats = stream_heartbeats(lake)
    assert [(b["run_id"], b["records"], b["alive"]) for b in beats] == [("s0", 5, False), ("s1", 20, True)]
    assert beats[0]["host"] == socket.gethostname()
    assert sorted(p.name for p in (lake.home / "system" / "streams").iterdir()) == ["s0.json", "s1.json"]
