"""`saleslake stream` against a real Kafka broker: exactly once across kill -9, a broker
restart and a rebalance between two consumers; bad topics and a missing broker."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from stream_helpers import (
    assert_exactly,
    combined,
    finish_stream,
    group_assignment,
    start_group_member,
    start_stream,
    stream_env,
    wait_until,
)

from helpers import messages, sql
from saleslake import api
from saleslake.devservices.kafka import start_kafka, stop_kafka
from saleslake.errors import TransientError
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


def test_a_transaction_re_sent_with_another_time_replaces_its_lines(stream_settings, lake):
    """The same transaction ids sent again 40 days later (a till re-sending its day, a
    correction): each line stays once in silver, at its latest event time, wherever the
    earlier version sits, and gold builds (its unique test on line_key held)."""
    first_time = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    first = api.produce(300, seed=3, settings=stream_settings, start_time=first_time)
    api.stream(until_idle=True, settings=stream_settings)
    assert_exactly(stream_settings, first)
    again = api.produce(300, seed=3, settings=stream_settings, start_time=first_time + timedelta(days=40))
    assert again.valid_lines == first.valid_lines
    api.stream(until_idle=True, settings=stream_settings)
    rows, keys, earliest, sales = sql(
        lake,
        "SELECT count(*), count(DISTINCT line_key), min(order_ts), sum(sales) FROM silver.sales_lines "
        "WHERE source_system = 'pos'",
    )[0]
    assert rows == keys == again.valid_lines and sales == Decimal(again.valid_sales)
    assert earliest >= first_time + timedelta(days=40)
    # a malformed message is a record of its own each time it comes: both sends are kept
    quarantined = sql(lake, "SELECT count(*) FROM silver.quarantine")[0][0]
    assert quarantined == first.expected_quarantine_rows + again.expected_quarantine_rows
    result = api.run(settings=stream_settings, max_quarantine_share=1.0)
    assert result.status == "succeeded"
    facts, sales = sql(lake, "SELECT count(*), sum(sales) FROM gold.fact_sales WHERE source_system = 'pos'")[0]
    assert facts == again.valid_lines and sales == Decimal(again.valid_sales)


def streams_with_records(settings) -> int:
    """How many stream runs of the lake have committed records (their heartbeats say)."""
    return sum(1 for r in api.status(limit=20, settings=settings) if r.get("stream", {}).get("records", 0) > 0)


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
    # the signal comes once it has committed a batch (its handlers are in place), however slow its start
    wait_until(lambda: proc.poll() is not None or streams_with_records(stream_settings) >= 1, "a committed batch")
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
    four = stream_settings.model_copy(update={"kafka": stream_settings.kafka.model_copy(update={"partitions": 4})})
    summary = api.produce(40_000, seed=17, settings=four)
    first = start_stream(stream_settings, "--max-batch", "2000")
    second = None
    try:
        wait_until(lambda: first.poll() is not None or streams_with_records(stream_settings) >= 1, "a first batch")
        second = start_stream(stream_settings, "--max-batch", "2000")  # the group rebalances

        def shared() -> bool:  # each member holds partitions (or one of them ended early)
            members = group_assignment(stream_settings)
            ended = first.poll() is not None or second.poll() is not None
            return ended or (len(members) == 2 and all(members.values()))

        wait_until(shared, "both members' shares")
        # however far the first got alone, records now arrive on both members' partitions
        more = api.produce(20_000, seed=18, settings=four)
        wait_until(lambda: streams_with_records(stream_settings) >= 2, "records read by both members")
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
    for proc in (first, second):
        _out, errors = proc.communicate(timeout=60)
        assert proc.returncode == 0, errors
    beats = api.status(limit=10, settings=stream_settings)
    per_process = [r["stream"]["records"] for r in beats if r["command"] == "stream"]
    assert len(per_process) == 2 and all(n > 0 for n in per_process), per_process
    finish_stream(stream_settings)
    assert_exactly(stream_settings, combined(summary, more))


def test_until_idle_waits_for_the_partitions_a_killed_member_held(stream_settings, lake):
    """A member holds some partitions when it is killed -9; the broker hands them over
    only when its session times out (30 s here, explicit). The `--until-idle` run that
    shared the group with it must wait for them, not stop once its own share is drained
    (it did: 11,576 of 24,834 lines, "idle", "lag 0")."""
    summary = api.produce(8_000, seed=19, settings=stream_settings)  # 4 partitions
    partitions = set(range(stream_settings.kafka.partitions))
    holder = start_group_member(stream_settings, session_timeout_ms=30_000)
    final = None
    try:
        wait_until(lambda: group_assignment(stream_settings) == {"test-holder": partitions}, "the holder's assignment")
        final = start_stream(stream_settings, "--until-idle")

        def shared() -> bool:  # the group gave each member a share (or the final run ended early)
            members = group_assignment(stream_settings)
            return final.poll() is not None or (len(members) == 2 and all(members.values()))

        wait_until(shared, "the final run's share")
        holder.kill()  # kill -9: it never leaves the group, its session has to time out
        holder.wait()
        out, errors = final.communicate(timeout=900)
    finally:
        for proc in (holder, final):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert final.returncode == 0, errors
    assert "(idle)" in out and "lag 0;" in out
    assert_exactly(stream_settings, summary)


def test_until_idle_names_the_partitions_a_live_member_keeps(stream_settings, lake):
    """A live member that holds partitions and reads nothing: `--until-idle` does not hang,
    and does not claim success; after stream.idle_wait_seconds without progress it stops
    with one line naming each partition behind and its holder, and status shows that lag."""
    summary = api.produce(4_000, seed=20, settings=stream_settings)
    partitions = set(range(stream_settings.kafka.partitions))
    holder = start_group_member(stream_settings, session_timeout_ms=6_000)
    try:
        wait_until(lambda: group_assignment(stream_settings) == {"test-holder": partitions}, "the holder's assignment")
        done = subprocess.run(
            [sys.executable, "-m", "saleslake.cli", "stream", "--until-idle"],
            env={**stream_env(stream_settings), "SALESLAKE_STREAM__IDLE_WAIT_SECONDS": "60"},
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 4, done.stdout
    (line,) = done.stderr.strip().splitlines()
    lag = api.stream_lag(settings=stream_settings)
    behind = sorted(p for p, n in lag.items() if n)
    assert 0 < len(behind) < len(partitions), lag  # its own share is in the lake, the holder's is not
    assert "not drained after" in line
    for p in behind:
        assert f"{p} ({lag[p]:,} offsets behind" in line and "held by test-holder" in line, line
    run = next(r for r in api.status(settings=stream_settings) if r["command"] == "stream")
    assert run["status"] == "failed"
    assert {int(p): n for p, n in run["stream"]["lag"].items()} == lag
    assert run["stream"]["total_lag"] == sum(lag.values()) > 0

    finish_stream(stream_settings)  # the holder is gone: everything arrives, once
    assert_exactly(stream_settings, summary)


def test_until_idle_ends_when_only_transaction_markers_remain(stream_settings, lake):
    """Aborted records and the abort marker of a transactional producer end every
    partition: offsets a read_committed consumer never receives. `--until-idle` must still
    find the topic drained (it spun forever) and the lag must be 0 (it was 2 a partition)."""
    from confluent_kafka import Producer

    summary = api.produce(2_000, seed=21, settings=stream_settings)
    topic = stream_settings.kafka.topic
    producer = Producer({"bootstrap.servers": stream_settings.kafka.bootstrap_servers, "transactional.id": topic})
    producer.init_transactions(60)
    producer.begin_transaction()
    for p in range(stream_settings.kafka.partitions):
        producer.produce(topic, value=b"never committed", partition=p)
    producer.flush(60)
    producer.abort_transaction(60)

    done = finish_stream(stream_settings)
    said = " ".join(messages(done.stdout))  # a long summary wraps
    assert "(idle)" in said and "lag 0;" in said
    assert_exactly(stream_settings, summary)
    assert api.stream_lag(settings=stream_settings) == dict.fromkeys(range(stream_settings.kafka.partitions), 0)


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
