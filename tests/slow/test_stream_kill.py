"""`saleslake stream` killed -9 at random moments over 100k events (25k produced before each
round), restarted each time:
exactly once at the end.

Each kill lands only after the consumer committed a random number (1-3) of batches in that
run, as its crash-point log says (SALESLAKE_TESTONLY_CRASH_LOG, polled with a generous
deadline), and then a random fraction of a second later, so it hits a consumer with work
committed and work in flight whatever the machine's load: a slow machine only makes the
test slower, never weaker."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

from stream_helpers import assert_exactly, combined, finish_stream, start_stream

from saleslake import api
from saleslake.crashpoints import CRASH_LOG_ENV

COMMITTED = "stream.sales_lines.after_commit"  # a batch's lines are in silver


def commits(log: Path) -> int:
    """Batches whose lines the logged process committed to silver."""
    if not log.exists():
        return 0
    return sum(1 for line in log.read_text().splitlines() if line.split("\t")[0] == COMMITTED)


def wait_for_commits(proc: subprocess.Popen, log: Path, wanted: int, timeout: float = 600.0) -> None:
    """Poll the crash-point log until the consumer committed ``wanted`` batches."""
    deadline = time.monotonic() + timeout
    while commits(log) < wanted:
        if proc.poll() is not None:
            raise AssertionError(
                f"the consumer ended (exit {proc.returncode}) before being killed: {proc.stderr.read()}"
            )
        assert time.monotonic() < deadline, f"{commits(log)} of {wanted} batches committed within {timeout:.0f} s"
        time.sleep(0.2)


def test_exactly_once_across_kill_9(stream_settings, lake, tmp_path: Path):
    """100k events; the consumer is killed -9 four times, each time after it committed
    some batches, restarted each time. Each round first produces its own 25k events: a
    fast consumer that drained everything in an earlier round still finds the 1-3 batches
    (of 5,000) it must commit before its kill."""
    rng = random.Random(13)
    kills = 0
    sent = []
    for round_ in range(4):
        sent.append(api.produce(25_000, seed=13 + round_, settings=stream_settings))
        assert sent[-1].delivered == 25_000
        log = tmp_path / f"crash-points-{round_}.log"
        proc = start_stream(stream_settings, env={CRASH_LOG_ENV: str(log)})
        try:
            wait_for_commits(proc, log, rng.randint(1, 3))
            time.sleep(rng.uniform(0.0, 1.0))  # somewhere in the next batch (where exactly does not matter)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        kills += 1
    finish_stream(stream_settings)
    assert_exactly(stream_settings, combined(*sent))
    runs = [r for r in api.status(limit=50, settings=stream_settings) if r["command"] == "stream"]
    assert sum(r["status"] == "interrupted" for r in runs) == kills == 4
