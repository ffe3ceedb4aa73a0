"""`saleslake produce` against the session's real Kafka broker: what arrives, where, in
which order, and what happens when the broker is not there or the producer is stopped."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from deltalake import DeltaTable

from saleslake import api
from saleslake.errors import TransientError
from saleslake.lake import Lake, open_delta
from saleslake.reference import PRODUCTS, STORES
from saleslake.sample.pos_events import PosSimulator

START = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)


def read_topic(settings, expected: int, timeout: float = 60.0) -> list[tuple[int, int, bytes, bytes, int]]:
    """Every record of the settings' topic: (partition, offset, key, value, timestamp ms).
    Reads until ``expected`` records, then one more second to catch extras."""
    consumer = Consumer({
        "bootstrap.servers": settings.kafka.bootstrap_servers,
        "group.id": f"reader-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })  # fmt: skip
    consumer.subscribe([settings.kafka.topic])
    out: list[tuple[int, int, bytes, bytes, int]] = []
    deadline = time.monotonic() + timeout
    settle = None
    try:
        while time.monotonic() < deadline:
            for m in consumer.consume(num_messages=10_000, timeout=0.5):
                assert m.error() is None, m.error()
                out.append((m.partition(), m.offset(), m.key(), m.value(), m.timestamp()[1]))
            if len(out) >= expected:
                settle = settle or time.monotonic() + 1.0
                if time.monotonic() > settle:
                    break
    finally:
        consumer.close()
    return out


def wait_for_records(settings, at_least: int, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    """Poll the topic until it holds ``at_least`` records (the producer is sending)."""
    consumer = Consumer({
        "bootstrap.servers": settings.kafka.bootstrap_servers,
        "group.id": f"watcher-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })  # fmt: skip
    consumer.subscribe([settings.kafka.topic])
    seen = 0
    deadline = time.monotonic() + timeout
    try:
        while seen < at_least:
            assert proc.poll() is None, f"the producer exited ({proc.returncode}) before sending {at_least} records"
            assert time.monotonic() < deadline, f"only {seen} records in the topic after {timeout:.0f} s"
            seen += len(consumer.consume(num_messages=10_000, timeout=0.5))
    finally:
        consumer.close()


def with_partitions(settings, n: int):
    return settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"partitions": n})})


def topic_partitions(settings) -> int:
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    return len(admin.list_topics(topic=settings.kafka.topic, timeout=10).topics[settings.kafka.topic].partitions)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli_env(settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALESLAKE_")}
    env["SALESLAKE_HOME"] = str(settings.home)
    env["SALESLAKE_KAFKA__BOOTSTRAP_SERVERS"] = settings.kafka.bootstrap_servers
    env["SALESLAKE_KAFKA__TOPIC"] = settings.kafka.topic
    return env


CLI = [sys.executable, "-m", "saleslake.cli"]


# ---------------------------------------------------------------------------------------


def test_every_event_arrives_once_keyed_by_store_in_store_order(stream_settings) -> None:
    settings = with_partitions(stream_settings, 3)
    n = 6_000
    summary = api.produce(n, error_rate=0.1, fraud_rate=0.02, seed=9, settings=settings, start_time=START)
    assert summary.events == summary.delivered == n and summary.delivery_errors == 0 and not summary.interrupted
    assert summary.topic == settings.kafka.topic and summary.partitions == 3 == topic_partitions(settings)

    records = read_topic(settings, n)
    assert len(records) == n
    assert Counter(p for p, *_ in records).keys() == {0, 1, 2}

    # byte for byte the simulator's messages (simulated event times are reproducible)
    expected, again = PosSimulator(
        9, 0.1, 0.02, fraud=settings.fraud, stream=settings.stream, start_time=START
    ).generate(n)
    assert again.to_dict() | {"topic": None, "partitions": None} == summary.to_dict() | {
        "topic": None, "partitions": None, "delivered": 0, "elapsed_seconds": 0.0, "events_per_second": 0.0,
        "stores_registered": 0, "products_registered": 0}  # fmt: skip
    assert Counter(v for *_, v, _ in records) == Counter(v for _, v in expected)

    # key = store id, one partition per store, and each store's sales in the order made
    sent = defaultdict(list)
    for key, value in expected:
        sent[key].append(value)
    received = defaultdict(list)
    partitions = defaultdict(set)
    for partition, _offset, key, value, _ in sorted(records, key=lambda r: (r[0], r[1])):
        received[key].append(value)
        partitions[key].add(partition)
    assert received == sent
    assert all(len(p) == 1 for p in partitions.values())
    for key, values in received.items():
        for value in values:
            try:
                doc = json.loads(value)
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
            if isinstance(doc.get("store_id"), str):
                assert doc["store_id"].encode() == key

    # malformed and oversized messages travel like the others
    sizes = [len(v) for *_, v, _ in records]
    assert (
        sum(s > settings.stream.max_message_bytes for s in sizes)
        == summary.malformed_by_reason["oversized_message"]
        > 0
    )


def test_reference_data_is_registered_once(stream_settings) -> None:
    lake = Lake(stream_settings.home)
    first = api.produce(50, seed=3, settings=stream_settings)
    assert (first.stores_registered, first.products_registered) == (150, 3_000)
    stores = DeltaTable(str(STORES.path(lake))).to_pyarrow_table()
    products = DeltaTable(str(PRODUCTS.path(lake))).to_pyarrow_table()
    assert stores.num_rows == 150 and products.num_rows == 3_000
    assert set(stores["channel"].to_pylist()) == {"pos"}

    second = api.produce(50, settings=stream_settings)  # a fresh sales seed, the same world
    assert (second.stores_registered, second.products_registered) == (0, 0)
    assert second.seed != first.seed and second.catalog_seed == first.catalog_seed == 42
    assert DeltaTable(str(STORES.path(lake))).to_pyarrow_table().num_rows == 150
    assert DeltaTable(str(PRODUCTS.path(lake))).to_pyarrow_table().num_rows == 3_000

    # every store key and product id of the events resolves in the reference data
    store_ids = set(stores["store_id"].to_pylist())
    product_ids = set(products["product_id"].to_pylist())
    records = read_topic(stream_settings, 100)
    assert len(records) == 100 and {k.decode() for _, _, k, _, _ in records} <= store_ids
    transactions = Counter()
    for *_, value, _ in records:
        try:
            doc = json.loads(value)
            lines = doc["lines"]
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError):
            continue
        assert {x["product_id"] for x in lines if isinstance(x, dict)} <= product_ids
        transactions[doc.get("transaction_id")] += 1
    assert max(transactions.values()) == 1  # the second run added new sales


def test_existing_topic_is_used_as_is(stream_settings) -> None:
    api.produce(10, settings=with_partitions(stream_settings, 2))
    summary = api.produce(10, settings=with_partitions(stream_settings, 5))
    assert summary.partitions == 2 == topic_partitions(stream_settings)
    assert len(read_topic(stream_settings, 20)) == 20


def test_wall_clock_event_times_are_the_send_times(stream_settings) -> None:
    before = datetime.now(UTC)
    summary = api.produce(500, error_rate=0.0, fraud_rate=0.0, settings=stream_settings)
    after = datetime.now(UTC)
    records = read_topic(stream_settings, 500)
    assert len(records) == 500 == summary.events
    by_store = defaultdict(list)
    for _partition, _offset, key, value, ts in sorted(records, key=lambda r: (r[0], r[1])):
        doc = json.loads(value)
        when = datetime.strptime(doc["event_time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        assert before - timedelta(milliseconds=1) <= when <= after
        assert abs(ts - when.timestamp() * 1000) < 5_000  # the record's own timestamp agrees
        by_store[key].append(when)
    assert all(times == sorted(times) for times in by_store.values())


def test_rate_and_interval_pace_the_events(stream_settings) -> None:
    # lower bounds only: pacing may never send faster than asked; a busy machine may be slower
    summary = api.produce(300, rate=200.0, settings=stream_settings)
    assert summary.events == 300 and summary.elapsed_seconds >= 1.45
    summary = api.produce(11, interval=0.1, settings=stream_settings)
    assert summary.events == 11 and summary.elapsed_seconds >= 0.95
    assert len(read_topic(stream_settings, 311)) == 311


def test_unreachable_broker_is_a_quick_transient_error(settings) -> None:
    port = closed_port()
    down = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": f"127.0.0.1:{port}"})}
    )
    with pytest.raises(TransientError) as info:
        api.produce(10, settings=down)
    message = str(info.value)
    assert "\n" not in message and f"127.0.0.1:{port}" in message and "saleslake services start kafka" in message
    assert open_delta(STORES.path(Lake(settings.home))) is None  # nothing registered for events never sent


def test_cli_prints_the_summary_and_uses_the_contract_exit_codes(stream_settings) -> None:
    env = cli_env(stream_settings)
    done = subprocess.run([*CLI, "produce", "--events", "400", "--seed", "5", "--json"], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["events"] == summary["delivered"] == 400 and summary["topic"] == stream_settings.kafka.topic
    assert summary["valid_lines"] + summary["defective_lines"] == summary["lines"]
    assert len(read_topic(stream_settings, 400)) == 400

    human = subprocess.run([*CLI, "produce", "--events", "20"], env=env, capture_output=True, text=True, timeout=120)
    assert human.returncode == 0 and "sent 20 events (seed " in human.stdout and "expected: silver" in human.stdout

    both = subprocess.run([*CLI, "produce", "--events", "5", "--rate", "2", "--interval", "1"], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert both.returncode == 2 and "not both" in both.stderr
    bad_share = subprocess.run([*CLI, "produce", "--events", "5", "--error-rate", "2"], env=env, capture_output=True,
                               text=True, timeout=60)  # fmt: skip
    assert bad_share.returncode == 2

    env["SALESLAKE_KAFKA__BOOTSTRAP_SERVERS"] = f"127.0.0.1:{closed_port()}"
    down = subprocess.run([*CLI, "produce", "--events", "5"], env=env, capture_output=True, text=True, timeout=60)
    assert down.returncode == 4
    lines = down.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach Kafka" in lines[0] and "Traceback" not in down.stderr


def test_sigterm_flushes_and_reports_what_was_sent(stream_settings) -> None:
    env = cli_env(stream_settings)
    proc = subprocess.Popen([*CLI, "produce", "--events", "100000", "--rate", "400", "--json"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        # signal only once it is sending (its handler is in place then), however slow the start
        wait_for_records(stream_settings, 101, proc)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    summary = json.loads(stdout)
    assert summary["interrupted"] is True and summary["delivery_errors"] == 0
    assert 100 < summary["events"] < 100_000
    assert "interrupted" in stderr
    records = read_topic(stream_settings, summary["events"])
    assert len(records) == summary["events"] == summary["delivered"]


def test_producer_settings_come_from_kafka_client(stream_settings) -> None:
    """``kafka.client`` reaches the producer: a setting librdkafka rejects is a config error."""
    from saleslake.errors import ConfigError
    from saleslake.sample.pos_producer import producer_config

    bad = stream_settings.model_copy(
        update={"kafka": stream_settings.kafka.model_copy(update={"client": {"compression.type": "zip"}})}
    )
    assert producer_config(bad)["compression.type"] == "zip"
    assert (
        producer_config(stream_settings)["enable.idempotence"] is True
        and producer_config(stream_settings)["acks"] == "all"
    )
    with pytest.raises(ConfigError, match="zip"):
        api.produce(5, settings=bad)


def test_undeliverable_messages_stop_sending_and_are_counted(stream_settings) -> None:
    """A topic that refuses big messages: the oversized events cannot be delivered. Sending
    stops, the error carries the summary, and exactly the delivered events are in Kafka."""
    from confluent_kafka.admin import NewTopic

    from saleslake.sample.pos_producer import ProduceError

    topic = stream_settings.kafka.topic
    admin = AdminClient({"bootstrap.servers": stream_settings.kafka.bootstrap_servers})
    admin.create_topics([NewTopic(topic, 2, 1, config={"max.message.bytes": "100000"})])[topic].result(timeout=30)
    with pytest.raises(ProduceError) as info:
        api.produce(5_000, error_rate=0.3, seed=8, settings=stream_settings)
    summary = info.value.summary
    message = str(info.value)
    assert "\n" not in message and "not delivered" in message and "Message size too large" in message
    assert summary.delivery_errors >= 1 and summary.stopped.startswith("delivery failed") and not summary.interrupted
    assert summary.delivered == summary.events - summary.delivery_errors
    records = read_topic(stream_settings, summary.delivered, timeout=15)
    assert len(records) == summary.delivered  # no more (nothing lost is counted as sent), no less

    env = cli_env(stream_settings)
    done = subprocess.run([*CLI, "produce", "--events", "5000", "--error-rate", "0.3", "--seed", "8"], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    # (how many events were handed over before the first failure came back depends on timing)
    assert done.returncode == 4 and "delivery errors" in done.stdout
    assert done.stderr.strip().startswith("error:") and len(done.stderr.strip().splitlines()) == 1
