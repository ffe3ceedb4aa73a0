"""`saleslake stream` against a real Kafka broker: exactly once across kill -9, a broker
restart and a rebalance between two consumers; bad topics and a missing broker."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal

import pytest
from stream_helpers import assert_exactly, finish_stream, start_stream, stream_env

from helpers import sql
from saleslake import api
from saleslake.errors import TransientError
from saleslake.services.kafka import start_kafka, stop_kafka
from saleslake.sources.kafka import TopicMissingError


def test_consumes_everything_once_and_a_rerun_adds_nothing(stream_settings, lake):
    summary = api.produce(5_000, seed=11, settings=stream_settings)
    assert summary.delivered == 5_000
    result = api.stream(until_idle=True, settings=stream_settings)
    assert result.stopped_by == "idle" and result.records == 5_000
    assert result.counts.rows_valid == summary.valid_lines
    assert result.counts.rows_quarantined == summary.expected_quarantine_rows
    assert sum(result.lag.values()) == 0
    assert_exactly(stream_settings, summary)
    by_reason = dict(
        sql(
            lake,
            "SELECT r, count(*) FROM (SELECT unnest(reasons) AS r FROM silver.quarantine "
            "WHERE line_id IS NULL) GROUP BY r",
        )
    )
    assert by_reason == summary.malformed_by_reason

    again = api.stream(until_idle=True, settings=stream_settings)
    assert again.records == 0
    assert_exactly(stream_settings, summary)

    # the stream shows up in status with its positions and lag
    runs = api.status(settings=stream_settings)
    stream_runs = [r for r in runs if r["command"] == "stream"]
    assert len(stream_runs) == 2 and all(r["status"] == "succeeded" for r in stream_runs)
    assert stream_runs[-1]["stream"]["records"] == 5_000 and stream_runs[-1]["stream"]["total_lag"] == 0


def test_stream_lines_reach_gold(stream_settings, lake):
    summary = api.produce(2_000, seed=12, settings=stream_settings)
    api.stream(until_idle=True, settings=stream_settings)
    result = api.run(settings=stream_settings, max_quarantine_share=1.0)
    assert result.status == "succeeded"
    facts, sales, stores = sql(
        lake, "SELECT count(*), sum(sales), count(DISTINCT store_sk) FROM gold.fact_sales WHERE source_system = 'pos'"
    )[0]
    assert facts == summary.valid_lines and sales == Decimal(summary.valid_sales)
    # every line's store resolves to a real store version (reference data), not the unknown member
    assert sql(lake, "SELECT count(*) FROM gold.fact_sales WHERE store_sk = -1") == [(0,)]
    assert stores > 1


def test_sigterm_stops_gracefully(stream_settings, lake):
    summary = api.produce(3_000, seed=14, settings=stream_settings)
    proc = start_stream(stream_settings)
    time.sleep(8)
    proc.send_signal(signal.SIGTERM)
    out, errors = proc.communicate(timeout=60)
    assert proc.returncode == 0, errors
    assert "(signal)" in out
    finish_stream(stream_settings)
    assert_exactly(stream_settings, summary)


def test_broker_restart_mid_stream(stream_settings, kafka_broker, lake):
    first = api.produce(3_000, seed=15, settings=stream_settings)
    stop = threading.Event()
    results = []
    worker = threading.Thread(target=lambda: results.append(api.stream(settings=stream_settings, stop=stop)))
    worker.start()
    try:
        time.sleep(6)
        stop_kafka(kafka_broker)
        time.sleep(3)
    finally:
        start_kafka(kafka_broker)
    second = api.produce(3_000, seed=16, settings=stream_settings)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = sql(lake, "SELECT count(*) FROM bronze.pos_events")[0][0]
        if done >= 6_000:
            break
        time.sleep(1)
    stop.set()
    worker.join(timeout=60)
    assert results and results[0].stopped_by == "signal"
    from saleslake.lake import Lake

    valid = first.valid_lines + second.valid_lines
    sales = Decimal(first.valid_sales) + Decimal(second.valid_sales)
    rows, keys, total = sql(
        Lake(stream_settings.home), "SELECT count(*), count(DISTINCT line_key), sum(sales) FROM silver.sales_lines"
    )[0]
    assert rows == keys == valid and total == sales
    assert sql(lake, "SELECT count(*) FROM silver.quarantine")[0][0] == (
        first.expected_quarantine_rows + second.expected_quarantine_rows
    )


def test_rebalance_between_two_consumers_of_one_group(stream_settings, lake):
    summary = api.produce(
        40_000,
        seed=17,
        settings=stream_settings.model_copy(
            update={"kafka": stream_settings.kafka.model_copy(update={"partitions": 4})}
        ),
    )
    first = start_stream(stream_settings, "--max-batch", "2000")
    time.sleep(6)
    second = start_stream(stream_settings, "--max-batch", "2000")  # the group rebalances
    time.sleep(12)
    for proc in (first, second):
        proc.send_signal(signal.SIGTERM)
    for proc in (first, second):
        _out, errors = proc.communicate(timeout=60)
        assert proc.returncode == 0, errors
    beats = api.status(limit=10, settings=stream_settings)
    per_process = [r["stream"]["records"] for r in beats if r["command"] == "stream"]
    assert len(per_process) == 2 and all(n > 0 for n in per_process), per_process
    finish_stream(stream_settings)
    assert_exactly(stream_settings, summary)


def test_missing_topic_is_a_clear_user_error(stream_settings):
    settings = stream_settings.model_copy(
        update={"kafka": stream_settings.kafka.model_copy(update={"topic": "no.such.topic"})}
    )
    with pytest.raises(TopicMissingError, match=r"topic 'no\.such\.topic' does not exist"):
        api.stream(until_idle=True, settings=settings)
    done = subprocess.run(
        [sys.executable, "-m", "saleslake.cli", "stream", "--until-idle"],
        env=stream_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "does not exist" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_broker_down_at_start_is_transient_with_a_hint(settings):
    from helpers import free_port

    down = settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(update={"bootstrap_servers": f"127.0.0.1:{free_port()}"}),
            "stream": settings.stream.model_copy(update={"connect_attempts": 2}),
        }
    )
    with pytest.raises(TransientError, match="saleslake services start kafka"):
        api.stream(until_idle=True, settings=down)


def test_gold_stays_fresh_while_streaming(stream_settings, lake):
    summary = api.produce(2_000, seed=18, settings=stream_settings)
    stop = threading.Event()
    results = []
    worker = threading.Thread(
        target=lambda: results.append(
            api.stream(settings=stream_settings, stop=stop, refresh_gold_every=2, max_wait=0.5)
        )
    )
    worker.start()
    try:
        deadline = time.monotonic() + 180
        seen = 0
        while time.monotonic() < deadline and seen < summary.valid_lines:
            time.sleep(1)
            fresh = {r["source_system"]: r for r in api.freshness(settings=stream_settings)}
            seen = fresh.get("pos", {}).get("gold_lines", 0)
    finally:
        stop.set()
        worker.join(timeout=120)
    assert seen == summary.valid_lines
    assert results and results[0].gold_refreshes >= 1
    facts, sales = sql(lake, "SELECT count(*), sum(sales) FROM gold.fact_sales")[0]
    assert facts == summary.valid_lines and sales == Decimal(summary.valid_sales)
    stream_run = next(r for r in api.status(settings=stream_settings) if r["command"] == "stream")
    assert stream_run["stages"]["gold"]["status"] == "succeeded"
    assert stream_run["stages"]["gold"]["rows_valid"] == summary.valid_lines
    pos = api.freshness(settings=stream_settings)[0]
    assert pos["source_system"] == "pos" and pos["silver_lines"] == summary.valid_lines
    assert pos["silver_age_seconds"] is not None and pos["gold_published_at"] is not None
