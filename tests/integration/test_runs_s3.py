"""The run lock, the silver commit lock and stream heartbeats of a lake in a bucket, on a
real S3-compatible server (S3Proxy, fixture ``s3_settings``): the locks are leases
(:mod:`saleslake.storage.lease`) taken through the same functions as a local lake's flock."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import pyarrow as pa
import pytest

from saleslake.config import StorageSettings
from saleslake.errors import LockBusyError, PipelineError
from saleslake.lake import Lake, read_delta, write_delta
from saleslake.pipeline.runner import command_run
from saleslake.pipeline.stream import StreamResult, _write_heartbeat
from saleslake.runs import (
    HEARTBEATS,
    SILVER_LEASE,
    Ledger,
    StageRecord,
    _holder_message,
    lake_lock,
    lake_objects,
    ledger_rows,
    lock_holder,
    lock_is_free,
    silver_commit_lock,
    stream_heartbeats,
    utcnow,
)
from saleslake.serve.status import run_status
from saleslake.storage.lease import PREFIX, Lease, LeaseEntry, LeaseLostError

#: a time to live short enough for a test to wait out a dead holder's lease
SHORT_TTL = 3.0


def _lake(s3_settings, request: pytest.FixtureRequest, **storage) -> Lake:
    return Lake(
        f"s3://lakehouse/{request.node.name[:40]}-{uuid.uuid4().hex[:8]}",
        s3_settings.storage.model_copy(update=storage),
    )


@pytest.fixture
def s3_lake(s3_settings, request, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lake:
    """A fresh lake under its own prefix of the bucket, with the default leases."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return _lake(s3_settings, request)


@pytest.fixture
def short_lake(s3_settings, request, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lake:
    """The same with a run lease of :data:`SHORT_TTL` seconds."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return _lake(s3_settings, request, lease_ttl_seconds=SHORT_TTL)


def _entries(lake: Lake, prefix: str = PREFIX) -> list[LeaseEntry]:
    """The lease log, oldest first."""
    objects = lake_objects(lake)
    return [LeaseEntry(**json.loads(objects.read(key) or b"{}")) for key in objects.keys(prefix)]


def _hold(lake: Lake, run_id: str, command: str = "run") -> subprocess.Popen:
    """Another process holding the lake's run lock until a line arrives on its stdin (or
    it is killed)."""
    code = textwrap.dedent(
        f"""
        import sys
        from saleslake.config import StorageSettings
        from saleslake.lake import Lake
        from saleslake.runs import lake_lock
        lake = Lake({lake.location.uri!r}, StorageSettings.model_validate_json({lake.storage.model_dump_json()!r}))
        with lake_lock(lake, {run_id!r}, {command!r}):
            print("locked", flush=True)
            sys.stdin.readline()
        print("released", flush=True)
        """
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def _stop(holder: subprocess.Popen) -> None:
    if holder.poll() is None:
        holder.kill()
    holder.wait(timeout=60)


def test_a_second_taker_is_refused_in_one_line_naming_the_holder(s3_lake: Lake):
    holder = _hold(s3_lake, "holder-run", "rebuild gold")
    try:
        with pytest.raises(LockBusyError) as refused, lake_lock(s3_lake, "second-run", "run"):
            pass
        message = str(refused.value)
        assert "\n" not in message and refused.value.exit_code == 1
        for part in ("run holder-run", "rebuild gold", f"pid {holder.pid}", socket.gethostname(), "--wait SECONDS"):
            assert part in message
        assert not lock_is_free(s3_lake) and lock_holder(s3_lake) == "holder-run"
        assert "run holder-run" in _holder_message(s3_lake)
        assert {e.run_id for e in _entries(s3_lake)} == {"holder-run"}  # the refused one wrote nothing
    finally:
        _stop(holder)


def test_wait_takes_the_lock_once_the_holder_releases_it(s3_lake: Lake, monkeypatch: pytest.MonkeyPatch):
    holder = _hold(s3_lake, "first-run")
    refused_once = threading.Event()
    latest = Lease.latest

    def seen(self: Lease) -> LeaseEntry | None:  # tells when the waiter found the lease held
        entry = latest(self)
        if entry is not None and entry.run_id == "first-run" and entry.action != "release":
            refused_once.set()
        return entry

    monkeypatch.setattr(Lease, "latest", seen)
    got: list[str | None] = []

    def waiter() -> None:
        with lake_lock(s3_lake, "second-run", "run", wait_seconds=300):
            got.append(lock_holder(s3_lake))

    thread = threading.Thread(target=waiter)
    thread.start()
    try:
        assert refused_once.wait(300)
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.write("release\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "released"
        thread.join(300)
        assert got == ["second-run"]
    finally:
        _stop(holder)
        thread.join(300)
    log = [(e.run_id, e.action) for e in _entries(s3_lake) if e.action != "renew"]
    assert log == [
        ("first-run", "acquire"),
        ("first-run", "release"),
        ("second-run", "acquire"),
        ("second-run", "release"),
    ]
    assert lock_is_free(s3_lake) and lock_holder(s3_lake) is None


def test_a_holder_killed_with_sigkill_frees_the_lake_when_its_lease_expires(short_lake: Lake):
    s3_lake = short_lake
    holder = _hold(s3_lake, "killed-run")
    try:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=60)
        assert lock_holder(s3_lake) in ("killed-run", None)  # None once its lease expired
        with lake_lock(s3_lake, "next-run", "run", wait_seconds=300):  # polls until it expires
            assert lock_holder(s3_lake) == "next-run"
    finally:
        _stop(holder)
    entries = _entries(s3_lake)
    taken = next(i for i, e in enumerate(entries) if e.run_id == "next-run")
    before = entries[taken - 1]
    assert before.run_id == "killed-run" and before.action in ("acquire", "renew")  # never released
    assert entries[taken].written_at >= before.expires_at


def test_a_run_whose_lease_was_taken_stops_before_its_next_commit(short_lake: Lake, monkeypatch: pytest.MonkeyPatch):
    s3_lake = short_lake

    def stalled(self: Lease) -> None:  # the object store does not answer this holder's renewals
        raise OSError("timed out")

    with pytest.raises(LeaseLostError) as lost, command_run(s3_lake, "run", run_id="stalled-run") as run:
        monkeypatch.setattr(Lease, "renew", stalled)
        taker = Lease(lake_objects(s3_lake), ttl=600, run_id="taker-run")
        taker.acquire("run", wait_seconds=300)  # once the stalled run's lease expired
        with pytest.raises(LeaseLostError), silver_commit_lock(s3_lake):
            pytest.fail("a run that lost its lease entered the silver commit lock")
        with pytest.raises(LeaseLostError):  # a commit through an opened table (its s3:// URI)
            write_delta(read_delta(s3_lake.runs), pa.table({"run_id": ["x"]}), mode="append")
        with run.stage("silver"):
            pass  # recording the stage is the next commit: refused
    error = lost.value
    assert isinstance(error, PipelineError) and error.exit_code == 3 and "\n" not in str(error)
    assert "rerun the command" in str(error)
    rows = [(r["stage"], r["status"]) for r in ledger_rows(s3_lake) if r["run_id"] == "stalled-run"]
    assert rows == [("run", "running")]  # nothing written after the lease was lost
    assert lock_holder(s3_lake) == "taker-run"
    taker.release()


def test_silver_commit_lock_serialises_writers_on_s3(s3_lake: Lake):
    events: list[tuple[str, str]] = []
    probe = s3_lake.table("system", "probe")
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            for _ in range(2):
                with silver_commit_lock(s3_lake):
                    events.append(("in", name))
                    write_delta(probe, pa.table({"writer": [name]}), mode="append")
                    events.append(("out", name))
        except BaseException as exc:  # shown by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert errors == []
    assert len(events) == 12
    for enter, leave in zip(events[::2], events[1::2]):
        assert enter[0] == "in" and leave == ("out", enter[1])  # nobody inside at once
    assert read_delta(probe).to_pyarrow_table().num_rows == 6
    silver = _entries(s3_lake, SILVER_LEASE)
    assert silver[-1].action == "release" and all(e.command == "silver commit" for e in silver)
    assert _entries(s3_lake) == []  # the run lease is another log


def test_stream_heartbeats_are_objects_listed_by_prefix_and_read_by_status(s3_settings, request, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    lake = _lake(s3_settings, request)
    run_id = "stream-run"
    here = {"pid": os.getpid(), "host": socket.gethostname(), "locked": False}
    Ledger(lake, run_id, "stream").record(StageRecord("run", "running", utcnow(), details=here))
    result = StreamResult(run_id=run_id, batches=3, records=42, lag={0: 5, 1: 2})

    _write_heartbeat(lake, result, s3_settings, "running")

    assert lake_objects(lake).keys(HEARTBEATS) == [f"{HEARTBEATS}/{run_id}.json"]
    [beat] = stream_heartbeats(lake)
    assert (beat["run_id"], beat["records"], beat["total_lag"], beat["alive"]) == (run_id, 42, 7, True)
    assert beat["host"] == socket.gethostname() and beat["pid"] == os.getpid()
    [entry] = run_status(lake)
    assert entry["status"] == "running" and entry["stream"]["batches"] == 3 and entry["stream"]["total_lag"] == 7

    result.records = 50
    _write_heartbeat(lake, result, s3_settings, "stopped")  # overwritten in place

    [beat] = stream_heartbeats(lake)
    assert (beat["records"], beat["state"], beat["alive"]) == (50, "stopped", False)
    assert run_status(lake)[0]["status"] == "interrupted"  # its ledger row says running: it died after


def test_a_ttl_setting_reaches_the_lease(short_lake: Lake):
    with lake_lock(short_lake, "ttl-run", "run"):
        entry = _entries(short_lake)[0]
    assert (entry.run_id, entry.action, entry.command) == ("ttl-run", "acquire", "run")
    assert entry.expires_at - entry.written_at == pytest.approx(SHORT_TTL)
    assert StorageSettings().lease_ttl_seconds == 60.0 and StorageSettings().silver_lease_ttl_seconds == 20.0
