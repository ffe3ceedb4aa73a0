"""Helpers of the stream tests (importable as ``stream_helpers``): `saleslake stream`
subprocesses on a test's lake, topic and group, and the exactly-once check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from types import SimpleNamespace

from helpers import sql


def stream_env(settings) -> dict[str, str]:
    """Environment for a `saleslake stream` subprocess on the test's lake, topic and group."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALESLAKE_")}
    env.update(
        {
            "SALESLAKE_HOME": str(settings.home),
            "SALESLAKE_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
            "SALESLAKE_KAFKA__TOPIC": settings.kafka.topic,
            "SALESLAKE_KAFKA__GROUP_ID": settings.kafka.group_id,
            # a killed consumer's partitions move on after 6 s (the broker's minimum)
            "SALESLAKE_KAFKA__CLIENT": json.dumps({"session.timeout.ms": "6000", "heartbeat.interval.ms": "1000"}),
            "SALESLAKE_STREAM__MAX_BATCH": "5000",
        }
    )
    return env


def start_stream(settings, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`saleslake stream ARGS` in the background (``env``: more environment variables)."""
    return subprocess.Popen(
        [sys.executable, "-m", "saleslake.cli", "stream", *args],
        env={**stream_env(settings), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_stream(settings, timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "saleslake.cli", "stream", "--until-idle"],
        env=stream_env(settings),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return done


#: A plain member of the stream's consumer group: it takes the partitions the group gives
#: it and pauses them, so it holds them without reading them (nothing reaches the lake
#: from them), like a `saleslake stream` that died before committing them.
GROUP_MEMBER = """
import json, os
from confluent_kafka import Consumer
consumer = Consumer(json.loads(os.environ["MEMBER_CONFIG"]))
def on_assign(c, partitions):
    c.assign(partitions)
    c.pause(partitions)
consumer.subscribe([os.environ["MEMBER_TOPIC"]], on_assign=on_assign)
while True:
    consumer.poll(0.5)
"""


def start_group_member(settings, session_timeout_ms: int) -> subprocess.Popen:
    """A member of the stream's group that holds partitions and never reads them; the
    broker takes its partitions away ``session_timeout_ms`` after it dies."""
    config = {
        "bootstrap.servers": settings.kafka.bootstrap_servers,
        "group.id": settings.kafka.group_id,
        "client.id": "test-holder",
        "session.timeout.ms": str(session_timeout_ms),
        "heartbeat.interval.ms": "1000",
        "enable.auto.commit": "false",
    }
    env = {**os.environ, "MEMBER_CONFIG": json.dumps(config), "MEMBER_TOPIC": settings.kafka.topic}
    return subprocess.Popen([sys.executable, "-c", GROUP_MEMBER], env=env, stderr=subprocess.PIPE, text=True)


def group_assignment(settings) -> dict[str, set[int]]:
    """client.id -> partitions of the topic, per member of the group once it is stable
    (the broker's view); empty while it rebalances."""
    from confluent_kafka import ConsumerGroupState, KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    group = settings.kafka.group_id
    try:
        description = admin.describe_consumer_groups([group], request_timeout=10)[group].result()
    except KafkaException:  # the coordinator is loading or moving: ask again
        return {}
    if description.state != ConsumerGroupState.STABLE:
        return {}
    return {
        m.client_id: {tp.partition for tp in m.assignment.topic_partitions if tp.topic == settings.kafka.topic}
        for m in description.members
    }


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 300.0) -> None:
    """Poll ``condition`` until it holds; the deadline is generous, never a sync."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not reached within {timeout:.0f} s"
        time.sleep(0.5)


def assert_exactly(settings, summary) -> None:
    """Silver and quarantine hold exactly what the produced events call for."""
    from saleslake.lake import Lake

    lake = Lake(settings.home, settings.storage)
    rows, keys, sales = sql(
        lake,
        "SELECT count(*), count(DISTINCT line_key), sum(sales) FROM silver.sales_lines WHERE source_system = 'pos'",
    )[0]
    assert rows == keys == summary.valid_lines, (
        f"silver lines {rows:,} ({keys:,} keys), produced {summary.valid_lines:,}"
    )
    assert sales == Decimal(summary.valid_sales)
    q_rows, q_keys = sql(
        lake, "SELECT count(*), count(DISTINCT quarantine_key) FROM silver.quarantine WHERE source_system = 'pos'"
    )[0]
    assert q_rows == q_keys == summary.expected_quarantine_rows, f"quarantine {q_rows:,} ({q_keys:,} keys)"
    b_rows, b_offsets = sql(lake, 'SELECT count(*), count(DISTINCT ("partition", "offset")) FROM bronze.pos_events')[0]
    assert b_rows == b_offsets == summary.events, (
        f"bronze {b_rows:,} ({b_offsets:,} offsets), produced {summary.events:,}"
    )


def combined(*summaries):
    """What several produce calls sent, as one summary (the fields assert_exactly reads)."""
    fields = ("events", "valid_lines", "expected_quarantine_rows")
    total = {f: sum(getattr(s, f) for s in summaries) for f in fields}
    total["valid_sales"] = str(sum(Decimal(s.valid_sales) for s in summaries))
    return SimpleNamespace(**total)
