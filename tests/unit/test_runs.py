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
