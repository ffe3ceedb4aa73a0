"""The public Python API. The CLI and the Airflow DAGs call these functions and nothing else.

Example::

    from saleslake import api
    settings = api.settings(home="lakehouse")
    api.ingest_csv(["exports/"], settings=settings)
    result = api.run(settings=settings)
    api.query("SELECT sum(sales) FROM gold.fact_sales", settings=settings)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

import pyarrow as pa

from saleslake.bronze import LandResult, land_csv, reparse_csv
from saleslake.config import Settings, dsn_without_password, load_settings
from saleslake.crashpoints import crash_point
from saleslake.errors import (  # noqa: F401 - re-exported: the CLI and the DAGs match on these
    ConfigError,
    LockBusyError,
    QualityGateError,
    SaleslakeError,
    TransientError,
    UserError,
)
from saleslake.lake import Lake, open_delta
from saleslake.runs import Ledger, StageCounts, StageRecord, lake_lock, ledger_rows, lock_is_free, new_run_id, utcnow
from saleslake.sources.csv import CsvOverrides

Stage = Literal["bronze", "silver", "gold"]
Progress = Callable[[str, int, int | None], None]  # (task, advance, total)


def settings(home: str | Path | None = None, **overrides) -> Settings:
    """Resolve settings (defaults < saleslake.toml < SALESLAKE_* env < arguments)."""
    return load_settings(home=home, **overrides)


def _resolve(s: Settings | None) -> tuple[Settings, Lake]:
    s = s or load_settings()
    return s, Lake(s.home)


def _dsn_option(dsn: str | None, s: Settings, role: str) -> str | None:
    """A ``--dsn`` given to a command, refused when it holds a password (visible in ``ps``),
    as the ``postgres.dsn`` setting is."""
    try:
        return dsn_without_password(dsn, s.postgres.password_env(role))
    except ValueError as exc:
        why = " (any user can read a command line with ps)" if "password" in str(exc) else ""
        raise UserError(f"--dsn: {exc}{why}") from None


# -- ingest -------------------------------------------------------------------------------


def ingest_csv(
    paths: Sequence[str | Path],
    source: str | None = None,
    delimiter: str | None = None,
    decimal: str | None = None,
    date_format: str | None = None,
    encoding: str | None = None,
    currency: str | None = None,
    settings: Settings | None = None,
    wait_seconds: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
    reparse: bool = False,
) -> LandResult:
    """Land CSV files or folders in bronze. Files that cannot be exports come back in
    ``result.errors`` (one line each); every other file lands.

    ``reparse``: the files landed before, with the wrong options, are parsed again with
    these (see :func:`saleslake.bronze.reparse_csv`): the next ``run`` replaces their
    silver and quarantine rows, once; their source and currency stay unless given."""
    s, lake = _resolve(settings)
    if decimal not in (None, ".", ","):
        raise UserError(f"--decimal must be '.' or ',', not {decimal!r}")
    if delimiter is not None and len(delimiter) != 1:
        raise UserError(
            f"--delimiter must be one character such as ',' ';' '|' or a tab ($'\\t' in bash), not {delimiter!r}"
        )
    overrides = CsvOverrides(delimiter=delimiter, decimal=decimal, date_format=date_format, encoding=encoding)
    run_id = new_run_id()
    with lake_lock(lake, run_id, "ingest csv", wait_seconds):
        started = utcnow()
        if reparse:
            result = reparse_csv(lake, [Path(p) for p in paths], source, overrides, currency)
        else:
            result = land_csv(
                lake, [Path(p) for p in paths], source, overrides, currency or s.csv.default_currency, progress
            )
        Ledger(lake, run_id, "ingest csv").record(
            StageRecord(
                stage="bronze",
                status="failed" if result.errors else "succeeded",
                started_at=started,
                finished_at=utcnow(),
                error=str(result.errors[0]) if result.errors else None,
                details={
                    "landed": len(result.landed),
                    "already_landed": len(result.already_landed),
                    "header_only": len(result.header_only),
                    "reparsed": len(result.reparsed),
                    "bytes": sum(r["size_bytes"] for r in result.landed + result.reparsed),
                },
            )
        )
    return result


# -- run ----------------------------------------------------------------------------------


@dataclass
class RunResult:
    run_id: str
    status: str
    stages: dict[str, StageCounts] = field(default_factory=dict)
    gold: dict | None = None
    message: str = ""


def _gate_share(lake: Lake, this_run: StageCounts, this_details: dict | None = None) -> tuple[float, int, int]:
    """Quarantine share over all silver work not yet published to gold (incl. this run).

    The rows of an earlier parse that a reparse replaced leave the share when the run that
    counted them is in the window (its ``csv_seqs`` range holds the batch that wrote them):
    a file quarantined whole for a wrong --decimal, then reparsed, must not keep gold from
    being published. Their counts are in the reparse's manifest row, so a run killed while
    it replaced them changes nothing here."""
    from saleslake.bronze import replaced_parses
    from saleslake.silver.process import processed_seq

    rows = ledger_rows(lake)
    last_gold = max(
        (r["recorded_at"] for r in rows if r["stage"] == "gold" and r["status"] == "succeeded"), default=None
    )
    read = this_run.rows_read
    quarantined = this_run.rows_quarantined
    ranges = [this_details["csv_seqs"]] if this_details and this_details.get("csv_seqs") else []
    for r in rows:
        if (
            r["stage"] == "silver"
            and r["status"] in ("succeeded", "quality_gate")
            and (last_gold is None or r["recorded_at"] > last_gold)
        ):
            read += r["rows_read"] or 0
            quarantined += r["rows_quarantined"] or 0
            ranges += [json.loads(r["details"] or "{}").get("csv_seqs")] if r["details"] else []
    for parse in replaced_parses(lake, processed_seq(lake)):
        if any(low <= parse["batch_seq"] <= high for low, high in filter(None, ranges)):
            read -= parse["rows"]
            quarantined -= parse["quarantined"]
    read, quarantined = max(read, 0), max(quarantined, 0)
    return (quarantined / read if read else 0.0), quarantined, read


def _silver_version(lake: Lake) -> int:
    table = open_delta(lake.sales_lines)
    return -1 if table is None else table.version()


def _gold_is_current(lake: Lake) -> bool:
    for r in ledger_rows(lake):
        if r["stage"] == "gold" and r["status"] == "succeeded":
            details = json.loads(r["details"] or "{}")
            return details.get("silver_version") == _silver_version(lake) and (lake.gold / "fact_sales").is_dir()
    return False


def run(
    until: Stage = "gold",
    max_quarantine_share: float | None = None,
    settings: Settings | None = None,
    wait_seconds: float = 0.0,
    progress: Progress | None = None,
    force_gold: bool = False,
    publish: bool | None = None,
) -> RunResult:
    """Process everything landed and not yet processed, through ``until``.

    ``publish``: publish gold to the PostgreSQL warehouse after building it (default:
    ``postgres.publish_after_gold``); the Airflow gold DAG passes False and publishes in a
    task of its own."""
    s, lake = _resolve(settings)
    threshold = s.quality.max_quarantine_share if max_quarantine_share is None else max_quarantine_share
    if not 0.0 <= threshold <= 1.0:
        raise UserError(f"--max-quarantine-share must be between 0 and 1, not {threshold}")
    run_id = new_run_id()
    command = "rebuild gold" if force_gold else "run"
    with lake_lock(lake, run_id, command, wait_seconds):
        ledger = Ledger(lake, run_id, command)
        started = utcnow()
        ledger.record(StageRecord("run", "running", started))
        result = RunResult(run_id=run_id, status="running")
        try:
            publish = s.postgres.publish_after_gold if publish is None else publish
            _run_stages(lake, s, ledger, result, until, threshold, progress, force_gold, publish)
        except BaseException as exc:
            status = "quality_gate" if isinstance(exc, QualityGateError) else "failed"
            message = str(exc) if isinstance(exc, SaleslakeError) else f"{type(exc).__name__}: {exc}"
            ledger.record(
                StageRecord("run", status, started, utcnow(), error=message.splitlines()[0] if message else status)
            )
            raise
        result.status = "succeeded"
        ledger.record(StageRecord("run", "succeeded", started, utcnow(), details={"message": result.message}))
        return result


def _run_stages(lake, s, ledger, result, until, threshold, progress, force_gold, publish) -> None:
    from saleslake.silver.process import pending_objects, process_csv

    started = utcnow()
    objects, _, _ = pending_objects(lake)
    pending_bytes = sum(o["size_bytes"] for o in objects)
    ledger.record(
        StageRecord(
            "bronze", "succeeded", started, utcnow(), details={"pending_objects": len(objects), "bytes": pending_bytes}
        )
    )
    if until == "bronze":
        result.message = f"{len(objects)} landed object(s) waiting for silver"
        return

    started = utcnow()
    if progress:
        progress("silver", 0, pending_bytes)
    silver = process_csv(lake, s, (lambda n: progress("silver", n, None)) if progress else None)
    result.stages["silver"] = silver
    # the landings this stage parsed: the quality gate's window (see _gate_share)
    csv_details = {"csv_seqs": [objects[0]["landed_seq"], objects[-1]["landed_seq"]]} if objects else {}
    share, quarantined, read = _gate_share(lake, silver, csv_details)
    # The gate guards gold publication; a run that stops at silver only reports the share.
    gate_failed = share > threshold and until == "gold"
    ledger.record(
        StageRecord(
            "silver",
            "quality_gate" if gate_failed else "succeeded",
            started,
            utcnow(),
            counts=silver,
            details={"quarantine_share": round(share, 6), "silver_version": _silver_version(lake), **csv_details},
        )
    )
    crash_point("run.after_silver")
    _retention_stage(lake, s, ledger)
    if gate_failed:
        raise QualityGateError(
            f"quality gate: {quarantined} of {read} rows ({share:.1%}) were quarantined since gold was last "
            f"published, above the threshold {threshold:.1%}; silver and quarantine are committed, gold was not "
            "published (inspect with `saleslake quarantine`, then rerun with a higher --max-quarantine-share)"
        )
    if until == "silver":
        result.message = "silver is up to date"
        return

    if not force_gold and _gold_is_current(lake):
        result.message = "gold is up to date"
        ledger.record(
            StageRecord("gold", "skipped", utcnow(), utcnow(), details={"silver_version": _silver_version(lake)})
        )
        return
    from saleslake.gold.build import build_gold

    started = utcnow()
    if progress:
        progress("gold", 0, None)
    gold = build_gold(lake, s, ledger.run_id, full_refresh=force_gold)
    crash_point("run.before_gold_record")
    facts = gold.tables.get("fact_sales", 0)  # one fact per valid silver line (reconciled by dbt tests)
    ledger.record(
        StageRecord(
            "gold",
            "succeeded",
            started,
            utcnow(),
            counts=StageCounts(rows_read=facts, rows_valid=facts),
            details={
                "silver_version": _silver_version(lake),
                "tables": gold.tables,
                "versions": gold.versions,
                "fact_changes": gold.fact_changes,
                "timings": gold.timings,
            },
        )
    )
    result.gold = gold.tables
    result.message = "gold published"
    if publish:
        _publish_postgres_stage(lake, s, ledger)


def _publish_postgres_stage(lake, s, ledger) -> None:
    """The automatic warehouse publish after gold (``postgres.publish_after_gold``)."""
    from saleslake.serve.postgres import publish_postgres as publish

    started = utcnow()
    try:
        done = publish(s, run_id=ledger.run_id)
    except SaleslakeError as exc:
        ledger.record(StageRecord("publish_postgres", "failed", started, utcnow(), error=str(exc).splitlines()[0]))
        raise
    ledger.record(
        StageRecord(
            "publish_postgres",
            "succeeded",
            started,
            utcnow(),
            counts=StageCounts(rows_read=done.rows_sent, rows_valid=done.rows_sent),
            details=_publication_details(done),
        )
    )


def _publication_details(done) -> dict:
    return {
        "release_id": done.release_id,
        "dsn": done.dsn,
        "schema": done.schema,
        "skipped": done.skipped,
        "schema_version": done.schema_version,
        "migrations_applied": done.migrations_applied,
        "attempts": done.attempts,
        "swap_attempts": done.swap_attempts,
        "seconds": round(done.seconds, 3),
        "tables": {n: vars(t) for n, t in done.tables.items()},
    }


def publish_postgres(dsn: str | None = None, schema: str | None = None, settings: Settings | None = None):
    """Publish the latest gold release into the PostgreSQL warehouse (star schema, see
    :mod:`saleslake.serve.postgres`); returns its :class:`PostgresPublication`. ``dsn``
    defaults to the warehouse database as the warehouse role (password from
    ``SALESLAKE_POSTGRES_WAREHOUSE_PASSWORD[_FILE]``), ``schema`` to
    ``postgres.warehouse_schema``. Recorded in the ledger as stage ``publish_postgres``."""
    from saleslake.serve.postgres import publish_postgres as publish

    s, lake = _resolve(settings)
    dsn = _dsn_option(dsn, s, "warehouse")
    run_id = new_run_id()
    ledger = Ledger(lake, run_id, "publish postgres")
    started = utcnow()
    try:
        done = publish(s, dsn=dsn, schema=schema, run_id=run_id)
        crash_point("publish_postgres.before_ledger")
    except SaleslakeError as exc:
        if lake.runs.parent.is_dir():
            ledger.record(StageRecord("publish_postgres", "failed", started, utcnow(), error=str(exc).splitlines()[0]))
        raise
    ledger.record(
        StageRecord(
            "publish_postgres",
            "succeeded",
            started,
            utcnow(),
            counts=StageCounts(rows_read=done.rows_sent, rows_valid=done.rows_sent),
            details=_publication_details(done),
        )
    )
    return done


def _retention_stage(lake: Lake, s: Settings, ledger: Ledger) -> None:
    """Delete bronze data past its retention that silver has processed (see saleslake.retention)."""
    from dataclasses import asdict

    from saleslake.retention import apply_retention

    started = utcnow()
    done = apply_retention(lake, s)
    if done.files_deleted or done.events_deleted:
        ledger.record(StageRecord("bronze_retention", "succeeded", started, utcnow(), details=asdict(done)))


def rebuild_gold(
    settings: Settings | None = None, wait_seconds: float = 0.0, progress: Progress | None = None
) -> RunResult:
    """Rebuild gold from silver even when it is current."""
    return run(
        "gold",
        settings=settings,
        wait_seconds=wait_seconds,
        progress=progress,
        force_gold=True,
        max_quarantine_share=1.0,
    )


# -- read side ------------------------------------------------------------------------------


def status(limit: int = 20, settings: Settings | None = None) -> list[dict]:
    """Recent runs, newest first, with row accounting per stage (CONTRACT §1)."""
    _, lake = _resolve(settings)
    rows = ledger_rows(lake)
    runs: dict[str, dict] = {}
    for r in rows:
        entry = runs.setdefault(
            r["run_id"],
            {
                "run_id": r["run_id"],
                "command": r["command"],
                "status": None,
                "started_at": None,
                "finished_at": None,
                "error": None,
                "stages": {},
            },
        )
        if r["stage"] == "run" or (r["command"].startswith("ingest") and entry["status"] is None):
            entry.update(status=r["status"], started_at=r["started_at"], finished_at=r["finished_at"], error=r["error"])
        if r["stage"] != "run":
            entry["stages"][r["stage"]] = {
                "status": r["status"],
                "rows_read": r["rows_read"],
                "rows_valid": r["rows_valid"],
                "rows_quarantined": r["rows_quarantined"],
                "rows_duplicate": r["rows_duplicate"],
                "rows_corrected": r["rows_corrected"],
                "details": json.loads(r["details"]) if r["details"] else None,
            }
    order = {"bronze": 0, "silver": 1, "gold": 2}
    for entry in runs.values():
        entry["stages"] = dict(sorted(entry["stages"].items(), key=lambda kv: order.get(kv[0], 9)))
    free = lock_is_free(lake)
    from saleslake.stream import stream_heartbeats

    beats = {b["run_id"]: b for b in stream_heartbeats(lake)}
    ordered = sorted(runs.values(), key=lambda e: (e["started_at"] is not None, e["started_at"]), reverse=True)
    for entry in ordered:
        beat = beats.get(entry["run_id"])
        if beat is not None:
            entry["stream"] = {
                k: beat[k]
                for k in (
                    "topic",
                    "group_id",
                    "updated_at",
                    "batches",
                    "records",
                    "positions",
                    "lag",
                    "total_lag",
                    "gold_refreshes",
                    "alive",
                )
            }
        # a stream does not hold the run lock: it is alive while its process is
        alive = beat["alive"] if beat is not None else not free
        if entry["status"] == "running" and not alive:
            entry["status"] = "interrupted"
        for key in ("started_at", "finished_at"):
            if entry[key] is not None:
                entry[key] = entry[key].isoformat()
    return ordered[:limit]


def query(sql: str, settings: Settings | None = None, allow_files: Sequence[str | Path] = ()) -> pa.Table:
    """Read-only SQL over ``gold.*``, ``silver.*`` and ``system.*`` (committed snapshots).
    ``allow_files``: folders whose files the SQL may read, besides ``query.allow_files``."""
    from saleslake.serve.query import run_query

    s, lake = _resolve(settings)
    folders = [*s.query.allow_files, *(Path(p) for p in allow_files)]
    return run_query(lake, sql, folders)


def quarantine(reason: str | None = None, limit: int = 50, settings: Settings | None = None) -> pa.Table:
    """Quarantined rows, newest landed first, optionally only those with ``reason``."""
    from saleslake.serve.query import quarantine_rows

    _, lake = _resolve(settings)
    return quarantine_rows(lake, reason, limit)


def generate_csv(
    out: str | Path,
    rows: int = 100_000,
    regions: list[str] | None = None,
    error_rate: float = 0.02,
    seed: int = 42,
    progress: Callable[[int], None] | None = None,
):
    """Write realistic regional CSV exports (see saleslake.sample.csv_export)."""
    from saleslake.sample.csv_export import generate_csv as generate

    if rows <= 0:
        raise UserError("--rows must be positive")
    if not 0.0 <= error_rate <= 1.0:
        raise UserError("--error-rate must be between 0 and 1")
    return generate(Path(out), rows=rows, regions=regions, error_rate=error_rate, seed=seed, progress=progress)


def generate_oltp(
    dsn: str | None = None,
    orders: int = 10_000,
    mutate: bool = False,
    seed: int = 42,
    settings: Settings | None = None,
    replace: bool = False,
    progress: Callable[[int], None] | None = None,
):
    """Create and fill the operational shop database, or apply a round of changes to it
    (see saleslake.sample.oltp). ``dsn`` defaults to the ``shop`` database of the local
    service as the owner role; the password comes from ``SALESLAKE_POSTGRES_PASSWORD`` or
    ``SALESLAKE_POSTGRES_PASSWORD_FILE``, never from arguments."""
    from saleslake.sample.oltp import generate_oltp as generate

    s, _ = _resolve(settings)
    dsn = _dsn_option(dsn, s, "owner")
    return generate(s.postgres, dsn=dsn, orders=orders, mutate=mutate, seed=seed, replace=replace, progress=progress)


@dataclass
class PostgresIngestResult:
    run_id: str
    extract_seq: int
    tables: dict[str, int]  # changed rows taken per table
    context_rows: dict[str, int]  # unchanged companions read (lines of changed orders, orders of changed lines)
    silver: StageCounts
    removed: int  # lines taken out of silver (cancelled or deleted)
    reference: dict[str, int]
    extract_seconds: float
    seconds: float
    attempts: int
    # reference states quarantined per table (an implausible updated_at: CONTRACT §4)
    reference_quarantined: dict[str, int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(self.tables.values()) + sum(self.context_rows.values())

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.extract_seconds if self.extract_seconds else 0.0


def ingest_postgres(
    dsn: str | None = None,
    tables: Sequence[str] | None = None,
    settings: Settings | None = None,
    wait_seconds: float = 0.0,
) -> PostgresIngestResult:
    """Incremental extract of the operational database into bronze and silver, exactly once
    (see saleslake.sources.postgres and saleslake.silver.oltp). ``dsn`` defaults to the
    reader role's (``settings.postgres``); its password comes from
    ``SALESLAKE_POSTGRES_READER_PASSWORD[_FILE]``. ``tables`` limits the logical tables
    (orders and order_lines always go together)."""
    import time as _time

    from saleslake.runs import silver_commit_lock
    from saleslake.silver.oltp import apply_extract
    from saleslake.sources import postgres as source

    s, lake = _resolve(settings)
    dsn = _dsn_option(dsn, s, "reader")
    chosen = source.resolve_tables(tables)
    run_id = new_run_id()
    clock = _time.perf_counter()
    with lake_lock(lake, run_id, "ingest postgres", wait_seconds):
        ledger = Ledger(lake, run_id, "ingest postgres")
        started = utcnow()
        ledger.record(StageRecord("run", "running", started, details={"tables": chosen}))
        try:
            positions = source.read_positions(lake)
            extract = source.extract(lake, s, positions, chosen, dsn)
            crash_point("oltp.extract.done")
            ledger.record(
                StageRecord(
                    "bronze",
                    "succeeded",
                    started,
                    utcnow(),
                    counts=StageCounts(rows_read=extract.rows, rows_valid=extract.rows),
                    details={
                        "extract_seq": extract.seq,
                        "extract_id": extract.extract_id,
                        "seconds": round(extract.seconds, 3),
                        "attempts": extract.attempts,
                        "tables": {t: x.rows for t, x in extract.tables.items()},
                    },
                )
            )
            silver_started = utcnow()
            with silver_commit_lock(lake):
                if source.committed_seq(lake) != positions.committed_seq:
                    raise UserError("another operational extract committed meanwhile; run ingest postgres again")
                source.write_positions(lake, source.position_rows(extract, positions))
                crash_point("oltp.positions.after_commit")
                counts = apply_extract(lake, s, extract)
            crash_point("oltp.sales_lines.after_commit")
            silver = StageCounts(
                counts.rows_read,
                counts.rows_valid,
                counts.rows_quarantined,
                counts.rows_duplicate,
                counts.rows_corrected,
            )
            ledger.record(
                StageRecord(
                    "silver",
                    "succeeded",
                    silver_started,
                    utcnow(),
                    counts=silver,
                    details={
                        "removed": counts.removed,
                        "reference": counts.reference,
                        "reference_quarantined": counts.reference_quarantined,
                        "extract_seq": extract.seq,
                        "silver_version": _silver_version(lake),
                    },
                )
            )
        except BaseException as exc:
            message = str(exc) if isinstance(exc, SaleslakeError) else f"{type(exc).__name__}: {exc}"
            ledger.record(
                StageRecord("run", "failed", started, utcnow(), error=(message.splitlines() or ["failed"])[0])
            )
            raise
        ledger.record(StageRecord("run", "succeeded", started, utcnow()))
    return PostgresIngestResult(
        run_id=run_id,
        extract_seq=extract.seq,
        tables={t: x.rows for t, x in extract.tables.items()},
        context_rows={t: x.context_rows for t, x in extract.tables.items() if x.context_rows},
        silver=silver,
        removed=counts.removed,
        reference=counts.reference or {},
        reference_quarantined=counts.reference_quarantined or {},
        extract_seconds=extract.seconds,
        seconds=_time.perf_counter() - clock,
        attempts=extract.attempts,
    )


# -- point of sale ---------------------------------------------------------------------------


def produce(
    events: int,
    rate: float | None = None,
    interval: float | None = None,
    topic: str | None = None,
    error_rate: float = 0.02,
    fraud_rate: float = 0.01,
    seed: int | None = None,
    settings: Settings | None = None,
    progress: Callable[[int], None] | None = None,
    start_time: datetime | None = None,
    catalog_seed: int = 42,
):
    """Send simulated point-of-sale events (CONTRACT §6) to Kafka; returns their
    :class:`~saleslake.sample.pos_events.PosSummary`, the exact counts a correct consumer
    must reproduce.

    ``rate`` events per second or one every ``interval`` seconds (not both); neither: as
    fast as possible. ``seed`` fixes the sales (default: a fresh one, in ``summary.seed``;
    the same seed again re-sends the same transactions); ``catalog_seed`` fixes stores,
    products and customers, shared with ``generate csv --seed`` (keep one per lake). The
    stores and products are registered as reference data (idempotent) before the first
    event. ``start_time`` simulates event times from that instant instead of stamping the
    send time. ``progress(n)`` gets the events handed over. Ctrl-C/SIGTERM end sending
    early (``summary.interrupted``). Raises TransientError when the broker cannot be
    reached, and ProduceError (a TransientError with ``.summary``) when messages could not
    be delivered.
    """
    import secrets

    from saleslake.sample.pos_events import PosSimulator, register_reference
    from saleslake.sample.pos_producer import PosProducer

    s, lake = _resolve(settings)
    if isinstance(events, bool) or not isinstance(events, int) or events < 1:
        raise UserError(f"--events must be a positive integer, not {events!r}")
    if rate is not None and interval is not None:
        raise UserError("give either --rate or --interval, not both")
    if rate is not None and not rate > 0:
        raise UserError(f"--rate must be positive, not {rate}")
    if interval is not None and not interval > 0:
        raise UserError(f"--interval must be positive, not {interval}")
    pace = rate if rate is not None else (1.0 / interval if interval is not None else None)
    seed = secrets.randbits(31) if seed is None else seed
    simulator = PosSimulator(seed, error_rate, fraud_rate, catalog_seed=catalog_seed, fraud=s.fraud, stream=s.stream,
                             start_time=start_time)  # fmt: skip
    producer = PosProducer(s, topic)  # fails fast when the broker is down
    stores, products = register_reference(lake, catalog_seed)
    summary = producer.send(simulator, events, pace, progress)
    summary.stores_registered, summary.products_registered = stores, products
    return summary


# -- local services -------------------------------------------------------------------------


SERVICES = ("postgres", "kafka")


def services(
    action: Literal["start", "stop", "status"],
    names: Sequence[str] | None = None,
    settings: Settings | None = None,
    kafka_port: int | None = None,
    kafka_controller_port: int | None = None,
    postgres_port: int | None = None,
) -> dict[str, dict]:
    """Start, stop or describe local development services (state under ``<home>/services``).

    ``names`` default to all of :data:`SERVICES`. Returns, per service, its connection
    settings or status; PostgreSQL's never hold a password (DSNs without one, and under
    ``env`` the ``SALESLAKE_POSTGRES_..._PASSWORD_FILE`` variables naming the files).
    """
    s, _ = _resolve(settings)
    out: dict[str, dict] = {}
    for name in names or SERVICES:
        if name not in SERVICES:
            raise UserError(f"unknown service {name!r}; available: {', '.join(SERVICES)}")
        if name == "postgres":
            out[name] = _postgres_service(action, s, postgres_port)
            continue
        from saleslake.services.kafka import KafkaService, kafka_status, start_kafka, stop_kafka

        options = {k: v for k, v in (("port", kafka_port), ("controller_port", kafka_controller_port)) if v}
        service = KafkaService.for_lake(s.home, **options)
        if action == "start":
            out[name] = start_kafka(service)
        elif action == "stop":
            stop_kafka(service)
            out[name] = {"running": False}
        else:
            out[name] = kafka_status(service)
    return out


def _postgres_service(action: str, s: Settings, port: int | None) -> dict:
    from saleslake.services.postgres import PostgresService, postgres_status, start_postgres, stop_postgres

    service = PostgresService.from_settings(s, port=port)
    if action == "start":
        return start_postgres(service)
    if action == "stop":
        stop_postgres(service)
        return {"running": False}
    return postgres_status(service)


# -- point-of-sale stream ---------------------------------------------------------------------


def stream(
    topic: str | None = None,
    max_batch: int | None = None,
    max_wait: float | None = None,
    until_idle: bool = False,
    refresh_gold_every: float | None = None,
    max_batches: int | None = None,
    settings: Settings | None = None,
    stop=None,
    on_batch=None,
    max_seconds: float | None = None,
):
    """Consume the point-of-sale topic into bronze and silver, exactly once (CONTRACT §6).

    Runs until ``stop`` (a ``threading.Event``) is set, or with ``until_idle`` until the
    lake holds every record of every partition of the topic (whichever member of the group
    holds them; raises :class:`saleslake.sources.backlog.PartitionsNotDrainedError` after
    ``stream.idle_wait_seconds`` without progress), or after ``max_seconds`` (a bounded
    micro-batch run, as the Airflow stream DAG does). Returns a
    :class:`saleslake.stream.StreamResult`.
    """
    from saleslake.stream import StreamOptions, run_stream

    s, lake = _resolve(settings)
    if topic:
        s = s.model_copy(update={"kafka": s.kafka.model_copy(update={"topic": topic})})
    for name, value in (
        ("--max-batch", max_batch),
        ("--max-wait", max_wait),
        ("--refresh-gold-every", refresh_gold_every),
        ("--max-seconds", max_seconds),
    ):
        if value is not None and value <= 0:
            raise UserError(f"{name} must be positive, not {value}")
    options = StreamOptions(
        max_batch=max_batch,
        max_wait=max_wait,
        until_idle=until_idle,
        refresh_gold_every=refresh_gold_every,
        max_batches=max_batches,
        max_seconds=max_seconds,
    )
    return run_stream(lake, s, options, stop=stop, on_batch=on_batch)


def freshness(settings: Settings | None = None) -> list[dict]:
    """Per source system: newest data in silver and in the published gold (see
    :func:`saleslake.serve.freshness.freshness`)."""
    from saleslake.serve.freshness import freshness as source_freshness

    _, lake = _resolve(settings)
    return source_freshness(lake)


# -- orchestration and monitoring -----------------------------------------------------------


def doctor(settings: Settings | None = None, include_dbt: bool = True, home: str | Path | None = None) -> list:
    """Preflight checks (see :mod:`saleslake.doctor`): configuration, lake home and disk,
    package versions, the dbt project, PostgreSQL and Kafka reachability. Never raises for
    what it finds; a configuration error is the failed ``config`` check."""
    from saleslake.config import config_file_path
    from saleslake.doctor import Check, run_checks

    try:
        s = settings or load_settings(home=home)
        source = config_file_path()
    except ConfigError as exc:
        return [
            Check(
                "config", False, str(exc), "fix that setting in saleslake.toml (or SALESLAKE_CONFIG) or the environment"
            )
        ]
    where = f"{source} + environment" if source else "defaults + environment (no saleslake.toml)"
    return [Check("config", True, where), *run_checks(s, include_dbt)]


def quality_gate(max_quarantine_share: float | None = None, settings: Settings | None = None) -> dict:
    """Check the quarantine share of all silver work not yet in gold against the threshold
    (default ``quality.max_quarantine_share``). Returns ``{"share", "rows_quarantined",
    "rows_read", "threshold"}``; raises QualityGateError above the threshold."""
    s, lake = _resolve(settings)
    threshold = s.quality.max_quarantine_share if max_quarantine_share is None else max_quarantine_share
    share, quarantined, read = _gate_share(lake, StageCounts())
    out = {"share": round(share, 6), "rows_quarantined": quarantined, "rows_read": read, "threshold": threshold}
    if share > threshold:
        raise QualityGateError(
            f"quality gate: {quarantined} of {read} rows ({share:.1%}) were quarantined since gold was last "
            f"published, above the threshold {threshold:.1%} (inspect with `saleslake quarantine`)"
        )
    return out


def health(settings: Settings | None = None):
    """Freshness per source, recent quarantine rate and stream lag against the ``[monitor]``
    thresholds; returns a :class:`saleslake.serve.health.Health` (``.ok``, ``.problems``)."""
    from saleslake.serve.health import check_health

    s, lake = _resolve(settings)
    return check_health(lake, s)


def alert(
    title: str, text: str = "", severity: str = "error", details: dict | None = None, settings: Settings | None = None
):
    """Log an alert and send it to the configured webhook / e-mail (see :mod:`saleslake.alerts`);
    returns one :class:`saleslake.alerts.Delivery` per channel."""
    from saleslake.alerts import Alert, send_alert

    s = settings or load_settings()
    return send_alert(Alert(title, text, severity, details or {}), s)


# -- dashboard ------------------------------------------------------------------------------


def dashboard(
    port: int = 8501,
    host: str = "127.0.0.1",
    settings: Settings | None = None,
    headless: bool = True,
    allow_remote: bool = False,
) -> int:
    """Serve the Streamlit dashboard (:mod:`saleslake.serve.dashboard`) on ``host:port``
    until it is stopped; returns the server's exit code (0 after Ctrl-C or SIGTERM).

    It reads the lake's committed snapshots (gold at its latest release), so it works
    while a run writes. Binds 127.0.0.1 by default; an address that is not loopback is
    refused unless ``allow_remote`` (the dashboard has no login). Usage statistics are
    off. Raises UserError when the port is busy."""
    from saleslake.serve.dashboard.server import serve

    _, lake = _resolve(settings)
    return serve(lake.home, host, port, headless=headless, allow_remote=allow_remote)


def stream_lag(settings: Settings | None = None) -> dict[int, int]:
    """Point-of-sale messages per partition on the broker that silver does not hold yet,
    from the broker's high watermarks and the lake's committed positions (right whether or
    not a consumer runs; the stream DAG's lag check). Raises when the broker or topic is
    not there (see :func:`saleslake.serve.health.stream_lag`)."""
    from saleslake.serve.health import stream_lag as lag

    s, lake = _resolve(settings)
    return lag(lake, s)
