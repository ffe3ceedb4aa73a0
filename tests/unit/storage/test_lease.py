"""The lease log on a folder (exclusive create by hard link), with clocks the test turns."""

from __future__ import annotations

import json
import threading

import pytest

from helpers import race_for_the_lease
from saleslake.errors import PipelineError
from saleslake.storage.lease import (
    KEEP,
    PREFIX,
    Lease,
    LeaseHeldError,
    LeaseLostError,
    check_commit,
    guarding,
    held,
)
from saleslake.storage.objects import LocalObjects


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def lease(store, clock, ttl=60.0) -> Lease:
    return Lease(store, ttl=ttl, clock=clock, monotonic=clock)


def test_exclusive_create_refuses_an_existing_key_and_leaves_no_scratch(tmp_path):
    store = LocalObjects(tmp_path)
    assert store.create("a/b.json", b"first")
    assert not store.create("a/b.json", b"second")
    assert store.read("a/b.json") == b"first"
    assert store.keys("a") == ["a/b.json"]
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b.json"]
    store.delete("a/b.json")
    store.delete("a/b.json")
    assert store.read("a/b.json") is None and store.keys("a") == []


def test_a_held_lease_is_refused_naming_its_holder(tmp_path):
    clock, store = Clock(), LocalObjects(tmp_path)
    first, second = lease(store, clock), lease(store, clock)
    first.acquire("run")
    with pytest.raises(LeaseHeldError) as refused:
        second.acquire("stream")
    assert "another saleslake run (pid" in str(refused.value) and "expires in 60 s" in str(refused.value)
    assert store.keys(PREFIX) == [f"{PREFIX}/{1:020d}.json"]


def test_an_expired_lease_is_taken_over_and_its_holder_learns_it_lost_it(tmp_path):
    clock, store = Clock(), LocalObjects(tmp_path)
    dead, next_writer = lease(store, clock), lease(store, clock)
    dead.acquire("run")
    dead.check()
    clock.now += 60  # no renewal for a whole ttl: expired
    with pytest.raises(LeaseLostError):
        dead.check()
    next_writer.acquire("run")
    assert next_writer.generation == 2
    with pytest.raises(LeaseLostError, match="taken by run"):
        dead.renew()
    latest = next_writer.latest()
    assert latest is not None and latest.owner == next_writer.owner and latest.generation == 2


def test_renew_extends_and_release_frees_at_once(tmp_path):
    clock, store = Clock(), LocalObjects(tmp_path)
    holder, other = lease(store, clock), lease(store, clock)
    holder.acquire("run")
    clock.now += 50
    holder.renew()
    clock.now += 50  # 100 s after acquiring, 50 after the renewal: still held
    with pytest.raises(LeaseHeldError):
        other.acquire("run")
    holder.release()
    other.acquire("run")
    assert [e.action for e in [other.latest()]] == ["acquire"] and other.generation == 4


def test_racing_acquirers_exactly_one_wins(tmp_path):
    store = LocalObjects(tmp_path)
    assert race_for_the_lease(store, 8) == ["refused"] * 7 + ["won"]
    assert len(store.keys(PREFIX)) == 1


def test_old_generations_are_pruned(tmp_path):
    clock, store = Clock(), LocalObjects(tmp_path)
    holder = lease(store, clock)
    holder.acquire("run")
    for _ in range(40):
        holder.renew()
    keys = store.keys(PREFIX)
    assert len(keys) == KEEP + 1 and keys[-1].endswith(f"{41:020d}.json")


def test_a_foreign_object_in_the_log_is_one_line(tmp_path):
    store = LocalObjects(tmp_path)
    store.create(f"{PREFIX}/{7:020d}.json", b"not json")
    with pytest.raises(PipelineError, match="is not a saleslake lease entry"):
        Lease(store).acquire("run")


def test_held_renews_in_the_background_and_releases(tmp_path):
    store = LocalObjects(tmp_path)
    with held(Lease(store, ttl=0.6), "run") as holding:
        # poll for a condition (two renewals: a beat every 0.2 s), never for a duration
        deadline_reached = threading.Event()
        timer = threading.Timer(120, deadline_reached.set)
        timer.start()
        while holding.generation < 3 and not deadline_reached.is_set():
            deadline_reached.wait(0.05)
        timer.cancel()
        assert holding.generation >= 3
    latest = Lease(store).latest()
    assert latest is not None and latest.action == "release"


def test_a_holder_stalled_past_the_pruning_window_cannot_renew(tmp_path):
    # it stalls past its ttl; another process takes the lease and renews more than KEEP
    # times, so the slot after the stalled holder's last entry is written and pruned again
    clock, store = Clock(), LocalObjects(tmp_path)
    stalled, other = lease(store, clock), lease(store, clock)
    stalled.acquire("run")
    clock.now += 61
    other.acquire("stream")
    for _ in range(KEEP + 4):
        other.renew()
    assert store.read(f"{PREFIX}/{2:020d}.json") is None  # pruned: creating it again would succeed
    with pytest.raises(LeaseLostError, match="taken by stream"):
        stalled.renew()
    with pytest.raises(LeaseLostError):
        stalled.check()
    other.check()


def test_check_goes_by_the_wall_clock_too(tmp_path):
    # the monotonic clock stops while a machine sleeps; other hosts judge by the wall clock
    wall, store = Clock(), LocalObjects(tmp_path)
    asleep = Lease(store, ttl=60, clock=wall, monotonic=lambda: 0.0)
    asleep.acquire("run")
    wall.now += 61
    with pytest.raises(LeaseLostError):
        asleep.check()


def test_a_put_sent_again_after_its_answer_was_lost_is_still_ours(tmp_path):
    clock, store = Clock(), LocalObjects(tmp_path)
    holder = lease(store, clock)
    holder.acquire("run")
    real_create = store.create
    calls = []

    def lost_answer(key, data):  # the first PUT lands but its answer is lost: sent again
        calls.append(key)
        real_create(key, data)
        return real_create(key, data)

    store.create = lost_answer  # type: ignore[method-assign]
    holder.renew()
    assert holder.generation == 2 and len(calls) == 1


def test_a_refusal_names_the_holders_run_and_an_old_entry_without_one_still_reads(tmp_path):
    clock, store = Clock(), LocalObjects(tmp_path)
    Lease(store, clock=clock, monotonic=clock, run_id="20261207T230000Z-abc123").acquire("rebuild gold")
    with pytest.raises(LeaseHeldError, match=r"another saleslake run 20261207T230000Z-abc123: rebuild gold \(pid"):
        lease(store, clock).acquire("run")
    old = {k: v for k, v in json.loads(store.read(f"{PREFIX}/{1:020d}.json") or b"").items() if k != "run_id"}
    store.create(f"{PREFIX}/{2:020d}.json", json.dumps({**old, "generation": 2}).encode())
    latest = Lease(store).latest()
    assert (
        latest is not None and latest.run_id == "" and "another saleslake rebuild gold (pid" in latest.held_message(0)
    )


def test_leases_under_two_prefixes_are_independent(tmp_path):
    clock, store = Clock(), LocalObjects(tmp_path)
    run = lease(store, clock)
    silver = Lease(store, clock=clock, monotonic=clock, prefix="_saleslake/silver-lease")
    run.acquire("run")
    silver.acquire("silver commit")
    with pytest.raises(LeaseHeldError):
        Lease(store, clock=clock, monotonic=clock, prefix="_saleslake/silver-lease").acquire("silver commit")
    assert store.keys("_saleslake/silver-lease") == [f"_saleslake/silver-lease/{1:020d}.json"]
    assert store.keys(PREFIX) == [f"{PREFIX}/{1:020d}.json"]


def test_waiting_backs_off_up_to_a_cap_and_gives_up_at_the_deadline(tmp_path):
    clock, store = Clock(), LocalObjects(tmp_path)
    lease(store, clock).acquire("run")
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        clock.now += seconds

    waiter = Lease(store, clock=clock, monotonic=clock, sleep=sleep)
    with pytest.raises(LeaseHeldError):
        waiter.acquire("run", wait_seconds=10, poll_seconds=0.1, max_poll_seconds=2.0)
    assert pauses == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0, 0.9])  # the last one to the deadline


def test_commits_under_a_guarded_lake_check_its_lease(tmp_path):
    clock, store = Clock(), LocalObjects(tmp_path)
    holder = lease(store, clock)
    holder.acquire("run")
    check_commit("s3://bucket/lake/silver/sales_lines")  # nothing guarded: nothing checked
    with guarding("s3://bucket/lake", holder):
        check_commit("s3://bucket/lake/silver/sales_lines")
        clock.now += 60  # not renewed for a whole ttl
        with pytest.raises(LeaseLostError):
            check_commit("s3://bucket/lake/system/runs")
        check_commit("s3://bucket/lake-2/system/runs")  # another lake
    check_commit("s3://bucket/lake/system/runs")  # the block ended: not guarded any more
