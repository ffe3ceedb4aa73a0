"""Helpers of the stream tests (importable as ``stream_helpers``): `saleslake stream`
subprocesses on a test's lake, topic and group, and the exactly-once check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal

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


def start_stream(settings, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "saleslake.cli", "stream", *args],
        env=stream_env(settings),
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


def assert_exactly(settings, summary) -> None:
    """Silver and quarantine hold exactly what the produced events call for."""
    lake_home = settings.home
    from saleslake.lake import Lake

    lake = Lake(lake_home)
    rows, keys, sales = sql(
        lake,
        "SELECT count(*), count(DISTINCT line_key), sum(sales) FROM silver.sales_lines WHERE source_system = 'pos'",
    )[0]
    assert rows == keys == summary.valid_lines
    assert sales == Decimal(summary.valid_sales)
    q_rows, q_keys = sql(
        lake, "SELECT count(*), count(DISTINCT quarantine_key) FROM silver.quarantine WHERE source_system = 'pos'"
    )[0]
    assert q_rows == q_keys == summary.expected_quarantine_rows
    b_rows, b_offsets = sql(lake, 'SELECT count(*), count(DISTINCT ("partition", "offset")) FROM bronze.pos_events')[0]
    assert b_rows == b_offsets == summary.events
