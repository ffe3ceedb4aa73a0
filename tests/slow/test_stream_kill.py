"""`saleslake stream` killed -9 at random moments over 100k events, restarted each time:
exactly once at the end."""

from __future__ import annotations

import random
import signal
import time

from stream_helpers import assert_exactly, finish_stream, start_stream

from saleslake import api


def test_exactly_once_across_kill_9(stream_settings, lake):
    """100k events; the consumer is killed -9 at random moments, restarted each time."""
    summary = api.produce(100_000, seed=13, settings=stream_settings)
    assert summary.delivered == 100_000
    rng = random.Random(13)
    kills = 0
    for _ in range(4):
        proc = start_stream(stream_settings)
        time.sleep(rng.uniform(4.0, 9.0))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    assert kills >= 3, "the consumer finished before it could be killed: produce more events"
    finish_stream(stream_settings)
    assert_exactly(stream_settings, summary)
    runs = [r for r in api.status(limit=50, settings=stream_settings) if r["command"] == "stream"]
    assert sum(r["status"] == "interrupted" for r in runs) == kills
