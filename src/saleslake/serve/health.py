"""Pipeline health: what ``saleslake_monitor`` checks and the dashboard shows.

Three signals, each against a threshold in ``[monitor]``: per source, how long since its
newest line reached silver; the share of rows silver quarantined in the recent window;
and the point-of-sale stream's lag (messages on the broker not yet in silver), computed
from the broker's high watermarks and the positions committed in the lake, so it is
right even when no consumer is running. Everything is read from committed snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from saleslake.config import Settings
from saleslake.lake import Lake, open_delta
from saleslake.runs import ledger_rows
from saleslake.serve.freshness import freshness


@dataclass
class Health:
    checked_at: str
    sources: list[dict] = field(default_factory=list)  # freshness rows + max_age_seconds, stale
    quarantine: dict = field(default_factory=dict)  # window_hours, rows_read, rows_quarantined, share, max_share
    stream: dict = field(default_factory=dict)  # topic, lag per partition, total_lag, max_lag, error
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def max_age_for(source_system: str, limits: dict[str, float]) -> float | None:
    """The most specific limit: ``csv:exports`` before ``csv``."""
    if source_system in limits:
        return limits[source_system]
    return limits.get(source_system.split(":", 1)[0])


def check_health(lake: Lake, settings: Settings, now: datetime | None = None) -> Health:
    now = now or datetime.now(UTC)
    health = Health(checked_at=now.isoformat())
    _sources(health, lake, settings, now)
    _quarantine(health, lake, settings, now)
    _stream(health, lake, settings)
    return health


def _sources(health: Health, lake: Lake, settings: Settings, now: datetime) -> None:
    for row in freshness(lake, now):
        limit = max_age_for(row["source_system"], settings.monitor.max_source_age_seconds)
        age = row["silver_age_seconds"]
        stale = limit is not None and age is not None and age > limit
        health.sources.append({**row, "max_age_seconds": limit, "stale": stale})
        if stale:
            health.problems.append(
                f"source {row['source_system']} is stale: newest line reached silver "
                f"{age:,.0f} s ago (limit {limit:,.0f} s)"
            )


def _quarantine(health: Health, lake: Lake, settings: Settings, now: datetime) -> None:
    window = settings.monitor.quarantine_window_hours
    since = now - timedelta(hours=window)
    read = quarantined = 0
    for r in ledger_rows(lake):
        if r["stage"] != "silver" or r["status"] not in ("succeeded", "quality_gate"):
            continue
        recorded = r["recorded_at"]
        if recorded.tzinfo is None:
            recorded = recorded.replace(tzinfo=UTC)
        if recorded >= since:
            read += r["rows_read"] or 0
            quarantined += r["rows_quarantined"] or 0
    share = quarantined / read if read else 0.0
    limit = settings.monitor.max_quarantine_share
    health.quarantine = {
        "window_hours": window,
        "rows_read": read,
        "rows_quarantined": quarantined,
        "share": round(share, 6),
        "max_share": limit,
    }
    if share > limit:
        health.problems.append(
            f"quarantine rate {share:.1%} over the last {window:g} h "
            f"({quarantined:,} of {read:,} rows) is above {limit:.1%}"
        )


def _stream_in_use(lake: Lake) -> bool:
    return open_delta(lake.bronze_events) is not None


def _stream(health: Health, lake: Lake, settings: Settings) -> None:
    if not _stream_in_use(lake):
        return
    topic = settings.kafka.topic
    health.stream = {
        "topic": topic,
        "lag": {},
        "total_lag": None,
        "max_lag": settings.monitor.max_stream_lag,
        "error": None,
    }
    try:
        lag = stream_lag(lake, settings)
    except Exception as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        health.stream["error"] = message
        health.problems.append(f"stream lag unknown: {message}")
        return
    total = sum(lag.values())
    health.stream.update(lag=lag, total_lag=total)
    if total > settings.monitor.max_stream_lag:
        health.problems.append(
            f"stream lag on {topic} is {total:,} messages (limit {settings.monitor.max_stream_lag:,})"
        )


def stream_lag(lake: Lake, settings: Settings, timeout: float = 5.0) -> dict[int, int]:
    """Messages per partition on the broker that silver does not hold yet.

    Raises TopicMissingError / BrokerUnavailableError (one try) when the topic or the
    broker is not there."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    from saleslake.sources.kafka import consumer_config, wait_for_topic
    from saleslake.stream import app_id

    topic = settings.kafka.topic
    consumer = Consumer({**consumer_config(settings), "group.id": f"{settings.kafka.group_id}.monitor", "log_level": 0})
    try:
        partitions = wait_for_topic(consumer, settings, attempts=1)
        lines = open_delta(lake.sales_lines)
        lag: dict[int, int] = {}
        for p in range(partitions):
            try:
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout, cached=False)
            except KafkaException as exc:
                raise RuntimeError(f"cannot read the end of {topic}[{p}]: {exc}") from None
            version = lines.transaction_version(app_id(topic, p)) if lines is not None else None
            held = -1 if version is None else int(version)
            lag[p] = max(high - 1 - held, 0)
        return lag
    finally:
        consumer.close()
