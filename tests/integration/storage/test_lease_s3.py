"""The lake lease on a real S3-compatible server (S3Proxy): exclusive creates are the
server's conditional PUTs, a holder killed with SIGKILL frees the lake when its lease expires."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from helpers import race_for_the_lease
from saleslake.storage import s3_filesystem
from saleslake.storage.lease import Lease, LeaseLostError
from saleslake.storage.objects import S3Objects


@pytest.fixture
def store(s3_settings):
    return S3Objects(s3_filesystem(s3_settings.storage), f"lakehouse/tests/lease-{uuid.uuid4().hex}")


def test_the_server_refuses_a_second_create(store):
    assert store.create("k/one.json", b"first")
    assert not store.create("k/one.json", b"second")
    assert store.read("k/one.json") == b"first" and store.keys("k") == ["k/one.json"]


def test_racing_acquirers_on_s3_exactly_one_wins(store):
    assert race_for_the_lease(store, 6) == ["refused"] * 5 + ["won"]


def test_a_holder_killed_with_sigkill_frees_the_lake_when_its_lease_expires(store, s3_settings):
    # the holder: another process, a short lease it renews until it is killed
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from saleslake.config import Settings
                from saleslake.storage import s3_filesystem
                from saleslake.storage.lease import Lease, held
                from saleslake.storage.objects import S3Objects
                storage = Settings().storage.model_copy(update={s3_settings.storage.model_dump()!r})
                store = S3Objects(s3_filesystem(storage), {store.root!r})
                with held(Lease(store, ttl=3.0), "run"):
                    print("held", flush=True)
                    time.sleep(3600)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        live = Lease(store).latest()
        assert live is not None and live.pid == holder.pid and live.action in ("acquire", "renew")
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=60)
        taker = Lease(store)
        taker.acquire("run", wait_seconds=300)  # polls until the dead holder's lease expires
        taken = taker.latest()
        assert taken is not None and taken.owner == taker.owner and taken.generation > live.generation
        taker.release()
    finally:
        if holder.poll() is None:
            holder.kill()


def test_a_holder_whose_lease_was_taken_cannot_renew(store):
    clock = [time.time()]
    slow = Lease(store, ttl=30, clock=lambda: clock[0])
    slow.acquire("run")
    clock[0] += 31  # its entry says it expired (as if it had not renewed for 31 s)
    fast = Lease(store, ttl=30, clock=lambda: clock[0])
    fast.acquire("stream")
    with pytest.raises(LeaseLostError, match="taken by stream"):
        slow.renew()
    fast.release()
