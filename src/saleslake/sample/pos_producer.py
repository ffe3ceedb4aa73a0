"""Sends simulated point-of-sale events to Kafka (``saleslake produce``).

* Key = ``store_id`` (UTF-8), so each store's sales stay in order on one partition;
  value = the event's UTF-8 JSON (:mod:`saleslake.sample.pos_events`).
* The topic is created when missing (``kafka.partitions`` partitions, replication 1).
* Idempotent producer, ``acks=all``, lz4-compressed batches; ``kafka.client`` settings
  are merged over these defaults and a password comes only from
  ``SALESLAKE_KAFKA_PASSWORD`` (or ``..._FILE``).
* Pacing: ``rate`` events per second on a fixed schedule (no drift), or as fast as
  possible. The event time of a wall-clock event is taken when it is handed to the client.
* A broker that cannot be reached is a :class:`TransientError` within ``connect_timeout``
  seconds. Ctrl-C or SIGTERM stops sending; what was handed over is flushed and counted.
  Failed deliveries are counted, never silent.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from saleslake.config import Settings, read_secret
from saleslake.errors import ConfigError, TransientError, UserError
from saleslake.sample.pos_events import PosSimulator, PosSummary

__all__ = ["PosProducer", "ProduceError", "client_config", "producer_config"]

log = logging.getLogger("saleslake.kafka")
log.addHandler(logging.NullHandler())  # librdkafka's own log lines stay out of the CLI output

CONNECT_TIMEOUT = 10.0
MESSAGE_TIMEOUT_MS = 30_000  # a message not delivered by then is a delivery error
ALL_DOWN_GRACE = 3.0  # seconds every bootstrap broker may refuse before we give up
POLL_EVERY = 1024
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")

PRODUCER_DEFAULTS = {
    "enable.idempotence": True,
    "acks": "all",
    "compression.type": "lz4",
    "linger.ms": 20,
    "batch.num.messages": 10_000,
    "batch.size": 1_000_000,
    "queue.buffering.max.messages": 500_000,
    "message.timeout.ms": MESSAGE_TIMEOUT_MS,
    "delivery.report.only.error": True,  # successes are counted, not called back
}


def client_config(settings: Settings) -> dict[str, Any]:
    """What every client of this lake's Kafka needs: bootstrap servers, the user's
    ``kafka.client`` settings and the password from the environment."""
    conf: dict[str, Any] = {"bootstrap.servers": settings.kafka.bootstrap_servers, "logger": log}
    conf.update(settings.kafka.client)
    password = read_secret("SALESLAKE_KAFKA_PASSWORD")
    if password:
        conf["sasl.password"] = password
    return conf


def producer_config(settings: Settings) -> dict[str, Any]:
    """Producer settings: the defaults above, overridden by ``kafka.client``."""
    conf = dict(PRODUCER_DEFAULTS)
    conf.update(client_config(settings))
    return conf


class ProduceError(TransientError):
    """Sending stopped because messages could not be delivered; ``summary`` says what was
    handed over and how much of it arrived (``delivered``)."""

    def __init__(self, message: str, summary: PosSummary) -> None:
        super().__init__(message)
        self.summary = summary


_SIGNALS = ("SIGINT", "SIGTERM")


class _Stop:
    """Set by SIGINT/SIGTERM (or a fatal client error) so the send loop ends cleanly."""

    def __init__(self) -> None:
        self.flag = False
        self.reason = ""

    def set(self, reason: str) -> None:
        self.flag = True
        self.reason = self.reason or reason


@contextmanager
def _stop_on_signals(stop: _Stop) -> Iterator[None]:
    """Turn Ctrl-C and SIGTERM into ``stop`` while sending (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, lambda signum, _frame: stop.set(signal.Signals(signum).name))
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class PosProducer:
    """A connected producer for one topic. Creating it checks the broker and the topic::

    producer = PosProducer(settings)            # TransientError when unreachable
    summary = producer.send(PosSimulator(seed=1), 10_000, rate=500)
    """

    def __init__(self, settings: Settings, topic: str | None = None, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.settings = settings
        self.topic = topic or settings.kafka.topic
        if not _TOPIC_NAME.fullmatch(self.topic) or self.topic in (".", ".."):
            raise UserError(f"invalid Kafka topic name {self.topic!r}: use 1-249 letters, digits, '.', '_' or '-'")
        self.bootstrap = settings.kafka.bootstrap_servers
        self.connect_timeout = connect_timeout
        self.errors: list[str] = []
        self.all_down_since: float | None = None
        self.partitions = self._ensure_topic()

    # ---- topic ---------------------------------------------------------------------------

    def _admin(self) -> AdminClient:
        conf = client_config(self.settings)
        conf["error_cb"] = self._on_admin_error
        return _client(AdminClient, conf)

    def _on_admin_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self.all_down_since = self.all_down_since or time.monotonic()
        elif len(self.errors) < 20:
            self.errors.append(err.str())

    def _metadata(self, admin: AdminClient) -> Any:
        """Cluster metadata, retried until ``connect_timeout``; when every bootstrap broker
        has refused for a few seconds the broker is down, and waiting longer will not help."""
        deadline = time.monotonic() + self.connect_timeout
        while True:
            try:
                return admin.list_topics(timeout=max(min(1.0, deadline - time.monotonic()), 0.1))
            except KafkaException as exc:
                detail = exc.args[0].str() if exc.args and isinstance(exc.args[0], KafkaError) else str(exc)
            admin.poll(0)  # serves error_cb
            now = time.monotonic()
            if now >= deadline or (self.all_down_since is not None and now - self.all_down_since >= ALL_DOWN_GRACE):
                raise self._unreachable(detail)

    def _unreachable(self, detail: str) -> TransientError:
        cause = self.errors[-1] if self.errors else detail
        return TransientError(
            f"cannot reach Kafka at {self.bootstrap} ({cause}); "
            "start the local broker with `saleslake services start kafka` or set SALESLAKE_KAFKA__BOOTSTRAP_SERVERS"
        )

    def _ensure_topic(self) -> int:
        """The topic's partition count, creating the topic when it does not exist."""
        admin = self._admin()
        metadata = self._metadata(admin)
        existing = metadata.topics.get(self.topic)
        if existing is not None and existing.error is None:
            return len(existing.partitions)
        future = admin.create_topics(
            [NewTopic(self.topic, num_partitions=self.settings.kafka.partitions, replication_factor=1)],
            operation_timeout=self.connect_timeout,
        )[self.topic]
        try:
            future.result(timeout=2 * self.connect_timeout)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if not (isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS):
                raise TransientError(
                    f"cannot create Kafka topic {self.topic!r} on {self.bootstrap}: {err.str() if err else exc}"
                ) from None
        return self._wait_for_leaders(admin)

    def _wait_for_leaders(self, admin: AdminClient) -> int:
        """A new topic needs a leader per partition before it takes messages."""
        deadline = time.monotonic() + self.connect_timeout
        while True:
            topic = admin.list_topics(topic=self.topic, timeout=self.connect_timeout).topics.get(self.topic)
            if (
                topic is not None
                and topic.error is None
                and topic.partitions
                and all(p.leader >= 0 for p in topic.partitions.values())
            ):
                return len(topic.partitions)
            if time.monotonic() > deadline:
                raise TransientError(
                    f"Kafka topic {self.topic!r} on {self.bootstrap} has no leader after {self.connect_timeout:g} s"
                )
            time.sleep(0.1)

    # ---- sending ------------------------------------------------------------------------

    def send(
        self,
        simulator: PosSimulator,
        events: int,
        rate: float | None = None,
        progress: Callable[[int], None] | None = None,
        summary: PosSummary | None = None,
    ) -> PosSummary:
        """Send ``events`` events (``rate`` per second, or as fast as possible) and return the
        summary of what was handed over, with delivery results. Ctrl-C/SIGTERM stop sending:
        what was handed over is flushed and the summary says ``interrupted``. A message that
        cannot be delivered (or a fatal client error) stops sending too; after the flush that
        raises :class:`ProduceError`, which carries the summary."""
        if rate is not None and not rate > 0:
            raise UserError(f"rate must be positive, got {rate!r}")
        summary = summary or simulator.new_summary()
        summary.topic, summary.partitions = self.topic, self.partitions
        stop = _Stop()
        failed = [0]

        def on_delivery(err: KafkaError | None, _msg: Any) -> None:
            if err is not None:  # only failures are reported (delivery.report.only.error)
                failed[0] += 1
                stop.set(f"delivery failed: {err.str()}")

        def on_error(err: KafkaError) -> None:
            if err.fatal():
                stop.set(f"fatal producer error: {err.str()}")

        conf = producer_config(self.settings)
        conf["on_delivery"] = on_delivery
        conf["error_cb"] = on_error
        producer = _client(Producer, conf)
        keys = [s.encode() for s in simulator.world.store_id]
        started = time.monotonic()
        try:
            with _stop_on_signals(stop):
                for block in simulator.blocks(events):
                    done = _send_block(producer, self.topic, block, keys, rate, started, summary.events, stop, progress)
                    summary.add(block, done)
                    if stop.flag:
                        break
        finally:
            self._flush(producer)
            summary.interrupted = stop.reason in _SIGNALS
            summary.stopped = stop.reason or None
            summary.delivery_errors = failed[0]
            summary.delivered = summary.events - failed[0]
            summary.elapsed_seconds = round(time.monotonic() - started, 3)
            summary.events_per_second = (
                round(summary.events / summary.elapsed_seconds, 1) if summary.elapsed_seconds else 0.0
            )
        if failed[0] or (stop.flag and not summary.interrupted):
            cause = stop.reason if stop.reason not in _SIGNALS else f"{failed[0]} failed deliveries"
            raise ProduceError(
                f"{failed[0]:,} of {summary.events:,} events sent to {self.topic} on {self.bootstrap} were not delivered "
                f"({cause}); sending stopped",
                summary,
            )
        return summary

    def _flush(self, producer: Producer) -> None:
        """Wait for every handed-over message; those still pending when delivery times out
        are purged, which reports each of them as a delivery error."""
        timeout = float(producer_config(self.settings).get("message.timeout.ms", MESSAGE_TIMEOUT_MS)) / 1000.0 + 5.0
        if producer.flush(timeout) > 0:
            producer.purge()
            producer.flush(5.0)


def _client(kind: type, conf: dict[str, Any]) -> Any:
    """A client; settings librdkafka refuses (from ``kafka.client``) are a ConfigError."""
    try:
        return kind(conf)
    except (KafkaException, ValueError, TypeError) as exc:
        detail = exc.args[0].str() if exc.args and isinstance(exc.args[0], KafkaError) else str(exc)
        raise ConfigError(
            f"invalid Kafka client setting (kafka.client, env SALESLAKE_KAFKA__CLIENT): {detail}"
        ) from None


def _send_block(
    producer: Producer,
    topic: str,
    block,
    keys: list[bytes],
    rate: float | None,
    started: float,
    sent_before: int,
    stop: _Stop,
    progress: Callable[[int], None] | None,
) -> int:
    """Hand the block's events to the client; returns how many were handed over."""
    produce, poll = producer.produce, producer.poll
    data, starts, ends, splice, store = block.data, block.starts, block.ends, block.splice, block.store
    clock = _EventClock()
    reported = done = 0
    for i in range(block.size):
        if stop.flag:
            break
        if rate is not None:
            _wait_until(poll, started + (sent_before + i) / rate, stop)
            if stop.flag:
                break
        p = splice[i]
        value = data[starts[i] : ends[i]] if p < 0 else data[starts[i] : p] + clock.now() + data[p : ends[i]]
        try:
            produce(topic, value, keys[store[i]])
        except BufferError:  # the local queue is full: let the client drain it
            if not _produce_when_room(produce, poll, topic, value, keys[store[i]], stop):
                break
        done = i + 1
        if (done & (POLL_EVERY - 1)) == 0:
            poll(0)
            if progress is not None:
                progress(done - reported)
                reported = done
    poll(0)
    if progress is not None and done > reported:
        progress(done - reported)
    return done


def _produce_when_room(
    produce: Callable[..., None], poll: Callable[[float], int], topic: str, value: bytes, key: bytes, stop: _Stop
) -> bool:
    """Retry a message the full local queue refused; False when stopped meanwhile."""
    while not stop.flag:
        poll(0.05)
        try:
            produce(topic, value, key)
            return True
        except BufferError:
            continue
    return False


def _wait_until(poll: Callable[[float], int], due: float, stop: _Stop) -> None:
    """Sleep until ``due`` (monotonic), serving client callbacks meanwhile."""
    while not stop.flag:
        left = due - time.monotonic()
        if left <= 0:
            return
        poll(min(left, 0.1))


class _EventClock:
    """Wall-clock event times, formatted at most once per millisecond."""

    def __init__(self) -> None:
        self.ms = -1
        self.second = -1
        self.prefix = b""
        self.value = b""

    def now(self) -> bytes:
        ms = time.time_ns() // 1_000_000
        if ms != self.ms:
            self.ms = ms
            second = ms // 1000
            if second != self.second:
                self.second = second
                self.prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second)).encode()
            self.value = self.prefix + b"%03dZ" % (ms % 1000)
        return self.value
