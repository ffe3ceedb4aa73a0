"""The batch commands: land CSV exports, run bronze → silver → gold, rebuild gold, extract
the operational database, publish to the PostgreSQL warehouse. Each is one
:func:`~saleslake.pipeline.runner.command_run` with a stage per layer."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from saleslake.bronze import LandResult, land_csv, reparse_csv
from saleslake.config import Settings
from saleslake.crashpoints import crash_point
from saleslake.errors import UserError
from saleslake.lake import Lake, open_delta
from saleslake.pipeline.gate import gate_error, gate_share
from saleslake.pipeline.runner import CommandRun, Progress, command_run
from saleslake.runs import StageCounts, ledger_rows, silver_commit_lock
from saleslake.sources.csv import CsvOverrides
from saleslake.sources.remote import named_by_origin, staged_exports
from saleslake.storage import s3_filesystem

Stage = Literal["bronze", "silver", "gold"]


# -- ingest csv -------------------------------------------------------------------------------


def ingest_csv(
    lake: Lake,
    settings: Settings,
    paths: Sequence[Path | str],
    source: str | None,
    overrides: CsvOverrides,
    currency: str | None,
    wait_seconds: float,
    progress: Callable[[int, int], None] | None,
    reparse: bool,
) -> LandResult:
    """Land (or with ``reparse`` parse again) CSV files in bronze, as command ``ingest csv``;
    ``progress(files done, files)``. ``s3://`` paths are staged locally first
    (:mod:`saleslake.sources.remote`)."""
    with (
        command_run(lake, "ingest csv", wait_seconds) as run,
        run.stage("bronze") as bronze,
        staged_exports(paths, settings.storage, lake.tmp) as (files, origins),
    ):
        if reparse:
            result = reparse_csv(lake, files, source, overrides, currency, origins)
        else:
            currency = currency or settings.csv.default_currency
            result = land_csv(lake, files, source, overrides, currency, progress, origins)
        result = named_by_origin(result, origins)
        bronze.details = {
            "landed": len(result.landed),
            "already_landed": len(result.already_landed),
            "header_only": len(result.header_only),
            "reparsed": len(result.reparsed),
            "bytes": sum(r["size_bytes"] for r in result.landed + result.reparsed),
        }
        if result.errors:  # the other files landed: reported, not raised
            bronze.status = run.status = "failed"
            bronze.error = run.error = str(result.errors[0])
    return result


# -- run / rebuild gold -----------------------------------------------------------------------


@dataclass
class RunResult:
    run_id: str
    status: str
    stages: dict[str, StageCounts] = field(default_factory=dict)
    gold: dict | None = None
    message: str = ""


def silver_version(lake: Lake) -> int:
    table = open_delta(lake.sales_lines)
    return -1 if table is None else table.version()


def gold_is_current(lake: Lake) -> bool:
    """Whether the last gold build saw the silver version of now (and its tables exist)."""
    for r in ledger_rows(lake):
        if r["stage"] == "gold" and r["status"] == "succeeded":
            details = json.loads(r["details"] or "{}")
            return (
                details.get("silver_version") == silver_version(lake)
                and open_delta(lake.gold_table("fact_sales")) is not None
            )
    return False


def run(
    lake: Lake,
    settings: Settings,
    until: Stage,
    threshold: float,
    wait_seconds: float,
    progress: Progress | None,
    force_gold: bool,
    publish: bool,
) -> RunResult:
    """Process everything landed and not yet processed, through ``until`` (``rebuild gold``
    with ``force_gold``)."""
    command = "rebuild gold" if force_gold else "run"
    with command_run(lake, command, wait_seconds, progress=progress) as run:
        result = RunResult(run_id=run.run_id, status="running")
        _stages(run, settings, result, until, threshold, force_gold, publish)
        run.details["message"] = result.message
    result.status = "succeeded"
    return result


def _stages(
    run: CommandRun, s: Settings, result: RunResult, until: Stage, threshold: float, force_gold: bool, publish: bool
) -> None:
    objects = _bronze_stage(run)
    if until == "bronze":
        result.message = f"{len(objects)} landed object(s) waiting for silver"
        return
    _silver_stage(run, s, result, objects, threshold, gate=until == "gold")
    if until == "silver":
        result.message = "silver is up to date"
        return
    if not force_gold and gold_is_current(run.lake):
        result.message = "gold is up to date"
        run.record("gold", "skipped", details={"silver_version": silver_version(run.lake)})
        return
    _gold_stage(run, s, result, force_gold)
    result.message = "gold published"
    if publish:
        publish_postgres_stage(run, s)


def _bronze_stage(run: CommandRun) -> list[dict]:
    """The landed objects silver has not processed yet (recorded as stage ``bronze``)."""
    from saleslake.silver.process import pending_objects

    with run.stage("bronze") as bronze:
        objects, _, _ = pending_objects(run.lake)
        bronze.details = {"pending_objects": len(objects), "bytes": sum(o["size_bytes"] for o in objects)}
    return objects


def _silver_stage(
    run: CommandRun, s: Settings, result: RunResult, objects: list[dict], threshold: float, gate: bool
) -> None:
    """Silver from the pending objects, then retention; raises the quality gate (after
    both: silver and quarantine stay committed for inspection) when ``gate`` and the
    share of quarantined rows is above ``threshold``."""
    from saleslake.silver.process import process_csv

    lake = run.lake
    with run.stage("silver") as silver:
        run.progress("silver", 0, sum(o["size_bytes"] for o in objects))
        silver.counts = process_csv(lake, s, lambda n: run.progress("silver", n, None))
        result.stages["silver"] = silver.counts
        # the landings this stage parsed: the quality gate's window (see gate_share)
        csv_details = {"csv_seqs": [objects[0]["landed_seq"], objects[-1]["landed_seq"]]} if objects else {}
        share, quarantined, read = gate_share(lake, silver.counts, csv_details)
        # The gate guards gold publication; a run that stops at silver only reports the share.
        gate_failed = share > threshold and gate
        silver.status = "quality_gate" if gate_failed else "succeeded"
        silver.details = {"quarantine_share": round(share, 6), "silver_version": silver_version(lake), **csv_details}
    crash_point("run.after_silver")
    _retention_stage(run, s)
    if gate_failed:
        raise gate_error(share, quarantined, read, threshold, committed=True)


def _retention_stage(run: CommandRun, s: Settings) -> None:
    """Delete bronze data past its retention that silver has processed (see saleslake.retention)."""
    from saleslake.retention import apply_retention

    with run.stage("bronze_retention") as retention:
        done = apply_retention(run.lake, s)
        retention.details = asdict(done)
        retention.record = bool(done.files_deleted or done.events_deleted)


def _gold_stage(run: CommandRun, s: Settings, result: RunResult, force_gold: bool) -> None:
    from saleslake.gold.build import build_gold

    with run.stage("gold") as stage:
        run.progress("gold", 0, None)
        gold = build_gold(run.lake, s, run.run_id, full_refresh=force_gold)
        crash_point("run.before_gold_record")
        facts = gold.tables.get("fact_sales", 0)  # one fact per valid silver line (reconciled by dbt tests)
        stage.counts = StageCounts(rows_read=facts, rows_valid=facts)
        stage.details = {
            "silver_version": silver_version(run.lake),
            "tables": gold.tables,
            "versions": gold.versions,
            "fact_changes": gold.fact_changes,
            "timings": gold.timings,
        }
    result.gold = gold.tables


# -- publish postgres -------------------------------------------------------------------------


def publish_postgres_stage(run: CommandRun, s: Settings, dsn: str | None = None, schema: str | None = None):
    """Publish the latest gold release to the PostgreSQL warehouse, as stage
    ``publish_postgres`` of ``run``; returns the publication."""
    from saleslake.serve.postgres import publish_postgres as publish

    with run.stage("publish_postgres") as stage:
        done = publish(s, dsn=dsn, schema=schema, run_id=run.run_id)
        crash_point("publish_postgres.before_ledger")
        stage.counts = StageCounts(rows_read=done.rows_sent, rows_valid=done.rows_sent)
        stage.details = publication_details(done)
    return done


def publication_details(done) -> dict:
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


def lake_exists(lake: Lake) -> bool:
    """Whether a command ever wrote to the lake (its ``system/`` tables: ledger, manifest)."""
    if lake.is_local:
        return (lake.home / "system").is_dir()
    return s3_filesystem(lake.storage).isdir(lake.location.join("system").removeprefix("s3://"))


def publish_postgres(lake: Lake, s: Settings, dsn: str | None, schema: str | None):
    """Command ``publish postgres``: no lake lock (it only reads a committed release; the
    warehouse has its own lock). A lake that does not exist gets no ledger."""
    from saleslake.serve.postgres import publish_postgres as publish

    if not lake_exists(lake):
        return publish(s, dsn=dsn, schema=schema)
    with command_run(lake, "publish postgres", lock=False) as run:
        return publish_postgres_stage(run, s, dsn, schema)


# -- ingest postgres --------------------------------------------------------------------------


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
    lake: Lake, s: Settings, dsn: str | None, tables: list[str], wait_seconds: float
) -> PostgresIngestResult:
    """Command ``ingest postgres``: extract into bronze (stage ``bronze``), then apply the
    extract to silver with its positions in one locked step (stage ``silver``)."""
    from saleslake.sources import postgres as source

    clock = time.perf_counter()
    with command_run(lake, "ingest postgres", wait_seconds, details={"tables": tables}) as run:
        with run.stage("bronze") as bronze:
            positions = source.read_positions(lake)
            extract = source.extract(lake, s, positions, tables, dsn)
            crash_point("oltp.extract.done")
            bronze.counts = StageCounts(rows_read=extract.rows, rows_valid=extract.rows)
            bronze.details = {
                "extract_seq": extract.seq,
                "extract_id": extract.extract_id,
                "seconds": round(extract.seconds, 3),
                "attempts": extract.attempts,
                "tables": {t: x.rows for t, x in extract.tables.items()},
            }
        counts = _apply_extract(run, s, extract, positions)
    return PostgresIngestResult(
        run_id=run.run_id,
        extract_seq=extract.seq,
        tables={t: x.rows for t, x in extract.tables.items()},
        context_rows={t: x.context_rows for t, x in extract.tables.items() if x.context_rows},
        silver=StageCounts(*(getattr(counts, k) for k in asdict(StageCounts()))),
        removed=counts.removed,
        reference=counts.reference or {},
        reference_quarantined=counts.reference_quarantined or {},
        extract_seconds=extract.seconds,
        seconds=time.perf_counter() - clock,
        attempts=extract.attempts,
    )


def _apply_extract(run: CommandRun, s: Settings, extract, positions):
    """The extract into silver, its positions committed first under the silver commit lock
    (a position never runs ahead of data: the silver commits carry the extract sequence)."""
    from saleslake.silver.oltp import apply_extract
    from saleslake.sources import postgres as source

    lake = run.lake
    with run.stage("silver") as silver:
        with silver_commit_lock(lake):
            if source.committed_seq(lake) != positions.committed_seq:
                raise UserError("another operational extract committed meanwhile; run ingest postgres again")
            source.write_positions(lake, source.position_rows(extract, positions))
            crash_point("oltp.positions.after_commit")
            counts = apply_extract(lake, s, extract)
        crash_point("oltp.sales_lines.after_commit")
        silver.counts = StageCounts(*(getattr(counts, k) for k in asdict(StageCounts())))
        silver.details = {
            "removed": counts.removed,
            "reference": counts.reference,
            "reference_quarantined": counts.reference_quarantined,
            "extract_seq": extract.seq,
            "silver_version": silver_version(lake),
        }
    return counts
