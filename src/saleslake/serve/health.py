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


def stream_lag(lake: Lake, settings: Settings) -> dict[int, int]:
    """Offsets per partition on the broker that hold records the lake does not have yet,
    for every partition of the topic (as ``stream`` computes it, see
    :mod:`saleslake.sources.backlog`).

    Raises TopicMissingError / BrokerUnavailableError (one try) when the topic or the
    broker is not there."""
    from saleslake.sources.backlog import BacklogReader

    topic = settings.kafka.topic
    reader = BacklogReader(settings, held_of=_lake_positions(lake, topic))
    try:
        backlog = reader.read()
    finally:
        reader.close()
    if backlog.unknown:
        raise RuntimeError(f"cannot read the end of {topic}[{backlog.unknown[0]}] from the broker")
    return backlog.lag


def _lake_positions(lake: Lake, topic: str):
    """Read-only: per partition, the lowest offset the three stream tables hold (-1:
    none), where a restarted stream resumes."""
    from saleslake.sources.kafka import app_id

    tables = [open_delta(path) for path in (lake.bronze_events, lake.quarantine, lake.sales_lines)]

    def held_of(partitions: list[int]) -> dict[int, int]:
        held = {}
        for p in partitions:
            versions = [t.transaction_version(app_id(topic, p)) if t is not None else None for t in tables]
            held[p] = min(-1 if v is None else int(v) for v in versions)
        return held

    return held_of
