"""The point-of-sale stream: Kafka → bronze events → silver, exactly once, in micro-batches.

Each batch is committed as three Delta commits, each carrying, per topic-partition, the
last offset it covers (application transaction ``saleslake.pos:<topic>:<partition>``):

1. ``bronze/events/pos``: every record exactly as received (topic, partition, offset,
   key, timestamp, raw bytes), partitioned by ingest date;
2. ``silver/quarantine``: malformed messages and lines, with reasons;
3. ``silver/sales_lines``: the valid lines, deduplicated (a re-sent transaction line
   replaces the earlier one: latest offset wins) and enriched.

Before writing, under the silver commit lock, each table's positions are re-read and
records at or below them are dropped, so a record lands in each table once, whatever
happened before: a crash between two commits, a restart, a rebalance that handed a
partition to another consumer mid-batch. On (re)assignment the consumer seeks each
partition to the lowest of the three positions plus one (:mod:`saleslake.sources.kafka`).

Usage::

    from saleslake.pipeline.stream import StreamOptions, run_stream
    result = run_stream(lake, settings, StreamOptions(until_idle=True))
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, Transaction, write_deltalake

from saleslake import reference
from saleslake.config import Settings
from saleslake.contract import QUARANTINE_SCHEMA
from saleslake.crashpoints import crash_point
from saleslake.errors import LockBusyError, SaleslakeError
from saleslake.lake import Lake, ensure_delta, read_delta, snapshot_view_sql
from saleslake.pipeline.runner import CommandRun, command_run
from saleslake.runs import (
    Ledger,
    StageCounts,
    StageRecord,
    lake_lock,
    new_run_id,
    silver_commit_lock,
    utcnow,
    write_heartbeat,
)
from saleslake.silver import events
from saleslake.silver.dedup import DedupCounts, classify, write_upserts
from saleslake.silver.line_keys import LineKeys
from saleslake.silver.process import connect
from saleslake.sources.backlog import Backlog, BacklogReader, not_drained
from saleslake.sources.kafka import BRONZE_EVENTS_SCHEMA, LakePositions, PosConsumer, app_id
from saleslake.storage.lease import check_commit


@dataclass
class StreamOptions:
    max_batch: int | None = None  # default: settings.stream.max_batch
    max_wait: float | None = None  # default: settings.stream.max_wait_seconds
    until_idle: bool = False  # stop once the lake holds every record of every partition of the topic
    refresh_gold_every: float | None = None  # default: settings.stream.refresh_gold_every_seconds
    max_batches: int | None = None  # stop after this many non-empty batches (tests, benchmarks)
    idle_wait: float | None = None  # until_idle: error after this long without progress (stream.idle_wait_seconds)
    max_seconds: float | None = None  # stop after this long (bounded runs under a scheduler)


@dataclass
class StreamResult:
    run_id: str
    batches: int = 0
    records: int = 0
    counts: StageCounts = field(default_factory=StageCounts)
    positions: dict[int, int] = field(default_factory=dict)  # partition -> last offset in silver
    lag: dict[int, int] = field(default_factory=dict)  # every partition: offsets holding records not in the lake
    gold_refreshes: int = 0
    seconds: float = 0.0
    stopped_by: str = ""


def _transactions(topic: str, batch_max: dict[int, int], held: dict[int, int]) -> list[Transaction]:
    """Positions this commit advances: every partition of the batch beyond the table's."""
    return [Transaction(app_id(topic, p), o) for p, o in sorted(batch_max.items()) if o > held.get(p, -1)]


def _batch_max(records: pa.Table) -> dict[int, int]:
    if not records.num_rows:
        return {}
    grouped = records.group_by("partition").aggregate([("offset", "max")])
    return dict(zip(grouped["partition"].to_pylist(), grouped["offset_max"].to_pylist()))


def _after(records: pa.Table, held: dict[int, int]) -> pa.Table:
    """Records beyond the held position of their partition."""
    if not records.num_rows:
        return records
    # a lookup table indexed by partition number: no Python loop over the records
    partitions = records["partition"].to_numpy()
    table = np.full(int(partitions.max()) + 1, -1, dtype=np.int64)
    for p, offset in held.items():
        if p < len(table):
            table[p] = offset
    return records.filter(pc.greater(records["offset"], pa.array(table[partitions])))


class StreamWorker:
    """Processes batches of records into the lake; one per stream process."""

    def __init__(self, lake: Lake, settings: Settings, run_id: str):
        self.lake, self.settings, self.run_id = lake, settings, run_id
        self.topic = settings.kafka.topic
        self.positions = LakePositions(lake, self.topic)
        self.line_keys = LineKeys(lake)
        self.con = connect(settings, lake)
        self.con.execute("SET TimeZone = 'UTC'")
        self.batch_no = 0
        self.load_reference()

    # -- state --------------------------------------------------------------------------

    def load_reference(self) -> None:
        """Reference states (store location, product attributes) as temp tables, each state
        with the time it was replaced (``valid_until``): a range-bounded hash join on them is
        ~3x cheaper per batch than an ASOF join, which sorts the batch."""
        for name, ref in (("ref_stores", reference.STORES), ("ref_products", reference.PRODUCTS)):
            table = ensure_delta(ref.path(self.lake), ref.schema)
            self.con.execute(
                f"""
                CREATE OR REPLACE TEMP TABLE {name} AS
                SELECT *, lead(updated_at, 1, 'infinity'::TIMESTAMPTZ)
                              OVER (PARTITION BY {ref.key} ORDER BY updated_at) AS valid_until
                FROM ({snapshot_view_sql(table)})
                -- one state per instant, so the range join matches at most one
                QUALIFY row_number() OVER (PARTITION BY {ref.key}, updated_at ORDER BY source_system) = 1
                """
            )

    # -- one batch ------------------------------------------------------------------------

    def process(self, records: pa.Table) -> StageCounts:
        """Land one batch in the three tables; returns its row accounting."""
        self.batch_no += 1
        batch_id = f"pos:{self.run_id}:{self.batch_no}"
        batch_max = _batch_max(records)
        with silver_commit_lock(self.lake):
            held = self.positions.read(sorted(batch_max))
            crash_point("stream.bronze.before_commit")
            self._write_bronze(records, batch_max, held["bronze"])
            crash_point("stream.bronze.after_commit")
            counts = self._write_silver(records, batch_max, held, batch_id)
            crash_point("stream.sales_lines.after_commit")
        return counts

    def _write_bronze(self, records: pa.Table, batch_max: dict[int, int], held: dict[int, int]) -> None:
        # these commits bypass lake.write_delta: check the leases held (a lake in a bucket)
        check_commit(self.positions.tables["bronze"].table_uri)
        txns = _transactions(self.topic, batch_max, held)
        if not txns:
            return
        new = _after(records, held)
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        new = new.append_column("ingest_date", pa.array([day] * new.num_rows, pa.string()))
        write_deltalake(
            self.positions.tables["bronze"],
            new.cast(BRONZE_EVENTS_SCHEMA),
            mode="append",
            partition_by=["ingest_date"],
            commit_properties=CommitProperties(app_transactions=txns),
        )

    def _write_silver(
        self, records: pa.Table, batch_max: dict[int, int], held: dict[str, dict[int, int]], batch_id: str
    ) -> StageCounts:
        self._load_batch(records, batch_max, held)
        events.prepare_batch(self.con, self.settings, batch_id)
        quarantined = self._commit_quarantine(batch_max, held["quarantine"])
        return self._commit_lines(batch_max, held["lines"]).stage_counts(quarantined)

    def _load_batch(self, records: pa.Table, batch_max: dict[int, int], held: dict[str, dict[int, int]]) -> None:
        """The batch's records not yet in both tables (``records``) and, per partition, the
        positions each table already holds (``applied``), as temp tables."""
        floor = {p: min(held["lines"][p], held["quarantine"][p]) for p in batch_max}
        applied = pa.table(
            {
                "partition": pa.array(list(batch_max), pa.int32()),
                "lines_pos": pa.array([held["lines"][p] for p in batch_max], pa.int64()),
                "quarantine_pos": pa.array([held["quarantine"][p] for p in batch_max], pa.int64()),
            }
        )
        for name, rows in (("records", _after(records, floor)), ("applied", applied)):
            self.con.register(f"{name}_arrow", rows)
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_arrow")
            self.con.unregister(f"{name}_arrow")

    def _commit_quarantine(self, batch_max: dict[int, int], held: dict[int, int]) -> int:
        """Append the batch's quarantine rows the table does not hold yet, with the
        partitions' positions in the same commit; the rows appended."""
        self.con.execute(
            """CREATE OR REPLACE TEMP TABLE new_quarantine AS
               SELECT q.* EXCLUDE ("partition") FROM quarantine_rows q JOIN applied a USING ("partition")
               WHERE q.landed_seq > a.quarantine_pos"""
        )
        table = self.con.sql("SELECT * FROM new_quarantine").to_arrow_table().cast(QUARANTINE_SCHEMA)
        q_txns = _transactions(self.topic, batch_max, held)
        if q_txns:
            check_commit(self.positions.tables["quarantine"].table_uri)
            write_deltalake(
                self.positions.tables["quarantine"],
                table,
                mode="append",
                commit_properties=CommitProperties(app_transactions=q_txns),
            )
        crash_point("stream.quarantine.after_commit")
        return table.num_rows

    def _commit_lines(self, batch_max: dict[int, int], held: dict[int, int]) -> DedupCounts:
        """Classify the batch's valid lines the lines table does not hold yet against their
        earlier versions and commit the upserts with the partitions' positions."""
        con = self.con
        con.execute(
            """CREATE OR REPLACE TEMP VIEW valid AS
               SELECT v.* FROM valid_all v JOIN applied a ON v.fi = a."partition" WHERE v.landed_seq > a.lines_pos"""
        )
        target = self.positions.tables["lines"]
        # Earlier versions of the batch's keys can sit in any month (a transaction re-sent
        # with another event time): the key index says which months and times hold them,
        # so only those files are read, and a batch of new keys reads none.
        self.line_keys.ensure(con, target)
        earlier = self.line_keys.find_earlier(con)
        dedup = classify(con, target, -1, existing_filter=earlier.existing_filter(), target_files=earlier.files(target))
        l_txns = _transactions(self.topic, batch_max, held)
        if l_txns:
            self.line_keys.record(con)
            crash_point("stream.line_keys.after_commit")
            write_upserts(con, target, l_txns)
        return dedup

    def close(self) -> None:
        self.con.close()


# -- the loop -------------------------------------------------------------------------------


class GoldRefresher(threading.Thread):
    """Rebuilds gold every ``interval`` seconds while silver changes, in the background,
    when no run holds the lake lock (a run publishes gold itself)."""

    def __init__(self, lake: Lake, settings: Settings, ledger: Ledger, interval: float, stop: threading.Event):
        super().__init__(name="saleslake-gold-refresh", daemon=True)
        self.lake, self.settings, self.ledger, self.interval, self.stop = lake, settings, ledger, interval, stop
        self.refreshes = 0
        self.last_error: str | None = None
        self._built_version: int | None = None

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            self.refresh_once()

    def refresh_once(self) -> bool:
        from saleslake.gold.build import build_gold

        version = read_delta(self.lake.sales_lines).version()
        if version == self._built_version:
            return False
        started = utcnow()
        try:
            with lake_lock(self.lake, self.ledger.run_id, "stream gold refresh"):
                gold = build_gold(self.lake, self.settings, self.ledger.run_id)
        except LockBusyError:
            return False  # a run is writing; it publishes gold itself
        except SaleslakeError as exc:
            self.last_error = str(exc).splitlines()[0]
            self.ledger.record(StageRecord("gold", "failed", started, utcnow(), error=self.last_error))
            return False
        self._built_version = version
        self.refreshes += 1
        facts = gold.tables.get("fact_sales", 0)
        self.ledger.record(
            StageRecord(
                "gold",
                "succeeded",
                started,
                utcnow(),
                counts=StageCounts(rows_read=facts, rows_valid=facts),
                details={"silver_version": version, "fact_changes": gold.fact_changes},
            )
        )
        return True


def _write_heartbeat(lake: Lake, result: StreamResult, settings: Settings, state: str) -> None:
    """What ``status`` shows for a stream: progress, lag, health (rewritten atomically)."""
    body = {
        "run_id": result.run_id,
        "pid": os.getpid(),
        "state": state,
        "topic": settings.kafka.topic,
        "group_id": settings.kafka.group_id,
        "updated_at": utcnow().isoformat(timespec="seconds"),
        "batches": result.batches,
        "records": result.records,
        "counts": asdict(result.counts),
        "positions": result.positions,
        "lag": result.lag,
        "total_lag": sum(result.lag.values()),
        "gold_refreshes": result.gold_refreshes,
    }
    write_heartbeat(lake, result.run_id, body)


def run_stream(
    lake: Lake,
    settings: Settings,
    options: StreamOptions | None = None,
    stop: threading.Event | None = None,
    on_batch: Callable[[StreamResult], None] | None = None,
) -> StreamResult:
    """Consume until ``stop`` is set (SIGTERM in the CLI), ``until_idle`` finds nothing
    left, or ``max_batches`` batches were processed. Recorded in the ledger as a ``stream``
    command with one ``silver`` stage; it holds no lake lock (see :mod:`saleslake.runs`)."""
    result = StreamResult(run_id=new_run_id())
    details = {"topic": settings.kafka.topic}
    with command_run(lake, "stream", lock=False, details=details, run_id=result.run_id) as run:
        run.details["stopped_by"] = "error"
        with run.stage("silver") as silver:
            try:
                _consume(lake, settings, options or StreamOptions(), stop or threading.Event(), on_batch, result, run)
            finally:
                silver.counts = result.counts
                silver.details.update(batches=result.batches, records=result.records, positions=result.positions)
        run.details["stopped_by"] = result.stopped_by or "error"
    return result


def _consume(
    lake: Lake,
    settings: Settings,
    options: StreamOptions,
    stop: threading.Event,
    on_batch: Callable[[StreamResult], None] | None,
    result: StreamResult,
    run: CommandRun,
) -> None:
    """Connect, run the batch loop, then close everything and write the last heartbeat."""
    clock = time.perf_counter()
    max_batch = options.max_batch or settings.stream.max_batch
    max_wait = options.max_wait or settings.stream.max_wait_seconds
    refresh_every = options.refresh_gold_every or settings.stream.refresh_gold_every_seconds
    worker = StreamWorker(lake, settings, result.run_id)
    refresher = GoldRefresher(lake, settings, run.ledger, refresh_every, stop) if refresh_every else None
    consumer = backlog = None
    state = "failed"
    try:
        consumer = PosConsumer(settings, positions_of=worker.positions.start_positions)
        backlog = BacklogReader(settings, held_of=worker.positions.start_positions)
        if refresher:
            refresher.start()
        _loop(consumer, backlog, worker, options, stop, max_batch, max_wait, result, run.ledger, settings, on_batch)
        state = "stopped"
    finally:
        stop.set()
        if refresher and refresher.is_alive():
            refresher.join()
        if refresher:
            result.gold_refreshes = refresher.refreshes
        for client in (consumer, backlog):
            if client is not None:
                client.close()
        worker.close()
        result.seconds = time.perf_counter() - clock
        _write_heartbeat(lake, result, settings, state)


def _loop(
    consumer: PosConsumer,
    backlog_reader: BacklogReader,
    worker: StreamWorker,
    options: StreamOptions,
    stop: threading.Event,
    max_batch: int,
    max_wait: float,
    result: StreamResult,
    ledger: Ledger,
    settings: Settings,
    on_batch: Callable[[StreamResult], None] | None,
) -> None:
    started = last_progress = time.monotonic()
    deadline = None if options.max_seconds is None else started + options.max_seconds
    idle_wait = options.idle_wait or settings.stream.idle_wait_seconds
    last_beat = 0.0
    last_reference = started
    backlog = Backlog()
    while not stop.is_set():
        records = consumer.poll_batch(max_batch, max_wait)
        if records.num_rows:
            counts = worker.process(records)
            result.batches += 1
            result.records += records.num_rows
            result.counts.add(counts)
            batch_max = _batch_max(records)
            result.positions.update(batch_max)
            consumer.commit_informational(batch_max)
            last_progress = time.monotonic()
        now = time.monotonic()
        if now - last_beat >= 5.0 or not records.num_rows:
            # every partition of the topic, not only those this member holds: another
            # member (or a dead one, until its session times out) may hold the rest
            previous, backlog = backlog, backlog_reader.read()
            if backlog.held != previous.held:  # this member or another one committed
                last_progress = now
            result.positions.update(backlog.held)
            result.lag = {**{p: result.lag.get(p, 0) for p in backlog.unknown}, **backlog.lag}
            _write_heartbeat(worker.lake, result, settings, "running")
            last_beat = now
        if now - last_reference >= 60.0:
            worker.load_reference()  # master data changes slowly; a minute behind is fine
            last_reference = now
        if on_batch and records.num_rows:
            on_batch(result)
        if options.max_batches is not None and result.batches >= options.max_batches:
            result.stopped_by = "max_batches"
            return
        if deadline is not None and now >= deadline:
            result.stopped_by = "max_seconds"
            return
        if options.until_idle and not records.num_rows:
            if backlog.drained:
                result.stopped_by = "idle"
                return
            if now - last_progress > idle_wait:
                raise not_drained(settings, backlog, now - last_progress)
    result.stopped_by = "signal"
