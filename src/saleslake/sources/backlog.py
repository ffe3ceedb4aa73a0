"""How far the lake is behind the point-of-sale topic, partition by partition: what
``stream --until-idle`` waits for, and the lag that ``status``, ``health`` and the
stream DAG report. Every partition of the topic counts, not only those a consumer holds.

* The **end** of a partition is its high watermark as the broker reports it to a
  ``read_committed`` consumer: the last stable offset, so records of a transaction still
  open do not count until it commits.
* The lake's **position** in a partition is supplied by the caller (``held_of``): the
  lowest offset that all three stream tables hold (their Delta application transactions),
  where a restart resumes.
* Offsets between the two are not all records: transaction markers and aborted records
  take offsets no ``read_committed`` consumer ever receives, and compaction leaves holes.
  So a gap that did not move since the previous look is **probed** once: a consumer
  outside the group reads from the position; reaching the end without a record (or only
  records at or past the end read a moment earlier) means the partition is drained: lag
  0. Without this a topic written by a transactional producer would never look drained.

Usage::

    reader = BacklogReader(settings, held_of=lambda partitions: {0: 41, 1: -1})
    backlog = reader.read()        # Backlog: ends, held, lag per partition; .drained
    reader.close()
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from confluent_kafka import Consumer, IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from saleslake.config import Settings
from saleslake.errors import TransientError
from saleslake.sources.kafka import PositionsOf, client_config, consumer_config, wait_for_topic

#: seconds one broker question (metadata, the ends) may take before the answer counts as
#: unknown (not drained) for this look
ASK_TIMEOUT = 5.0
#: seconds a probe may read before its unresolved partitions count as not drained
PROBE_TIMEOUT = 10.0


class PartitionsNotDrainedError(TransientError):
    """``--until-idle`` saw no progress for ``stream.idle_wait_seconds`` while partitions
    were still behind (held by another member, or the broker did not answer)."""


@dataclass
class Backlog:
    """One look at every partition of the topic."""

    ends: dict[int, int] = field(default_factory=dict)  # partition -> end (next offset to be written)
    held: dict[int, int] = field(default_factory=dict)  # partition -> last offset the lake holds (-1: none)
    lag: dict[int, int] = field(default_factory=dict)  # partition -> offsets beyond the lake holding records
    unknown: list[int] = field(default_factory=list)  # partitions whose end the broker did not tell now

    @property
    def drained(self) -> bool:
        """True when the lake holds every record of every partition."""
        return not self.unknown and not any(self.lag.values())

    @property
    def behind(self) -> list[int]:
        return sorted({p for p, n in self.lag.items() if n} | set(self.unknown))


def probe_config(settings: Settings) -> dict:
    """A read_committed consumer outside the stream's group (it only ever assigns
    partitions, never joins or commits) that reports the end of a partition and fetches
    little ahead."""
    return {
        **consumer_config(settings),
        "group.id": f"{settings.kafka.group_id}.monitor",
        "enable.partition.eof": True,
        "queued.min.messages": 1,
        "queued.max.messages.kbytes": 1024,
        "fetch.max.bytes": 1_048_576,
        "max.partition.fetch.bytes": 1_048_576,
        "log_level": 0,
    }


class BacklogReader:
    """Looks at the topic's ends and the lake's positions; remembers the last look so a
    gap that stays still is probed once, not at every look."""

    def __init__(self, settings: Settings, held_of: PositionsOf, connect_attempts: int = 1):
        self.topic = settings.kafka.topic
        self.held_of = held_of
        config = probe_config(settings)
        self.isolation = (
            IsolationLevel.READ_UNCOMMITTED
            if config.get("isolation.level") == "read_uncommitted"
            else IsolationLevel.READ_COMMITTED
        )
        self.consumer = Consumer(config)
        try:
            self.partitions = wait_for_topic(self.consumer, settings, connect_attempts)
        except Exception:
            self.consumer.close()
            raise
        self.admin = AdminClient({**client_config(settings), "log_level": 0})
        self._last: dict[int, tuple[int, int]] = {}  # partition -> (held, end) at the previous look
        self._probed: dict[tuple[int, int, int], bool] = {}  # (partition, held, end) -> a record is there

    def read(self) -> Backlog:
        ends, unknown = self._ends()
        held = self.held_of(sorted({*ends, *unknown}))
        state = {p: (held.get(p, -1), end) for p, end in ends.items()}
        gaps = {p: end - position - 1 for p, (position, end) in state.items() if end - position - 1 > 0}
        # a gap nobody moved since the previous look (or at the first look) may hold no
        # record at all (markers, aborted records): probe it, once per position and end
        unmoved = [p for p in gaps if self._last.get(p, state[p]) == state[p] and (p, *state[p]) not in self._probed]
        if unmoved:
            self._probed.update(self._probe({p: state[p] for p in unmoved}))
        self._probed = {key: found for key, found in self._probed.items() if state.get(key[0]) == key[1:]}
        self._last = state
        lag = dict.fromkeys(ends, 0)
        for p, gap in gaps.items():
            lag[p] = 0 if self._probed.get((p, *state[p])) is False else gap
        return Backlog(ends=ends, held=held, lag=lag, unknown=unknown)

    def _ends(self) -> tuple[dict[int, int], list[int]]:
        """The end of every partition (partitions added since the last look included), in
        one request to the partition leaders."""
        try:
            info = self.consumer.list_topics(self.topic, timeout=ASK_TIMEOUT).topics.get(self.topic)
            if info is not None and info.partitions:
                self.partitions = max(self.partitions, len(info.partitions))
        except KafkaException:
            pass  # keep the partitions known so far; their ends are asked below
        asked = {TopicPartition(self.topic, p): OffsetSpec.latest() for p in range(self.partitions)}
        ends: dict[int, int] = {}
        unknown: list[int] = []
        futures = self.admin.list_offsets(asked, isolation_level=self.isolation, request_timeout=ASK_TIMEOUT)
        for tp, future in futures.items():
            try:
                ends[tp.partition] = future.result().offset
            except KafkaException:
                unknown.append(tp.partition)
        return ends, sorted(unknown)

    def _probe(self, gaps: dict[int, tuple[int, int]]) -> dict[tuple[int, int, int], bool]:
        """Per (partition, held, end): does a record lie between the position and the end?
        Partitions the probe could not settle in time are left out (counted as behind)."""
        found: dict[tuple[int, int, int], bool] = {}
        open_ = dict(gaps)
        self.consumer.assign([TopicPartition(self.topic, p, held + 1) for p, (held, _) in gaps.items()])
        try:
            deadline = time.monotonic() + PROBE_TIMEOUT
            while open_ and time.monotonic() < deadline:
                message = self.consumer.poll(min(0.5, max(deadline - time.monotonic(), 0.0)))
                p = None if message is None else message.partition()
                if message is None or p is None or p not in open_:
                    continue
                error, offset = message.error(), message.offset()
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    continue  # a transient fetch error: librdkafka retries, the deadline bounds it
                held, end = open_.pop(p)
                # the end was read a moment ago: a record at or past it arrived since
                found[(p, held, end)] = error is None and offset is not None and offset < end
        finally:
            self.consumer.unassign()
        return found

    def close(self) -> None:
        self.consumer.close()


def group_holders(settings: Settings, partitions: list[int]) -> dict[int, str] | None:
    """Which member of the stream's group holds each partition, as the broker sees it
    (client.id and host; saleslake consumers are ``saleslake-<pid>``); None when the
    broker did not describe the group."""
    from confluent_kafka.admin import AdminClient

    from saleslake.sources.kafka import client_config

    group, topic = settings.kafka.group_id, settings.kafka.topic
    admin = AdminClient({**client_config(settings), "log_level": 0})
    try:
        description = admin.describe_consumer_groups([group], request_timeout=ASK_TIMEOUT)[group].result()
    except KafkaException:
        return None
    holders: dict[int, str] = {}
    for member in description.members:
        for tp in member.assignment.topic_partitions:
            if tp.topic == topic and tp.partition in partitions:
                holders[tp.partition] = f"{member.client_id} on {member.host.lstrip('/')}"
    return holders


def not_drained(settings: Settings, backlog: Backlog, waited: float) -> PartitionsNotDrainedError:
    """The one-line error of an ``--until-idle`` run that could not finish: which
    partitions, how far behind, held by whom, and what to do."""
    behind = backlog.behind
    holders = group_holders(settings, behind)
    nobody = "no member (the group is rebalancing)" if holders is not None else "unknown (no group description)"
    parts = [
        f"{p} ({'end unknown' if p in backlog.unknown else f'{backlog.lag[p]:,} offsets behind'}, "
        f"held by {(holders or {}).get(p, nobody)})"
        for p in behind
    ]
    return PartitionsNotDrainedError(
        f"stream --until-idle: partitions of {settings.kafka.topic} not drained after {waited:.0f} s without "
        f"progress: {', '.join(parts)}; a member that died keeps its partitions until its session.timeout.ms "
        "ends: stop the member holding them or let it finish (or raise stream.idle_wait_seconds), then run again"
    )
