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
from pathlib import Path
from typing import Literal

import pyarrow as pa

from saleslake.bronze import LandResult, land_csv
from saleslake.config import Settings, load_settings
from saleslake.errors import QualityGateError, SaleslakeError, UserError
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
) -> LandResult:
    """Land CSV files or folders in bronze. Files that cannot be exports come back in
    ``result.errors`` (one line each); every other file lands."""
    s, lake = _resolve(settings)
    if decimal not in (None, ".", ","):
        raise UserError(f"--decimal must be '.' or ',', not {decimal!r}")
    overrides = CsvOverrides(delimiter=delimiter, decimal=decimal, date_format=date_format, encoding=encoding)
    run_id = new_run_id()
    with lake_lock(lake, run_id, "ingest csv", wait_seconds):
        started = utcnow()
        result = land_csv(lake, [Path(p) for p in paths], source, overrides, currency or s.csv.default_currency, progress)
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
                    "bytes": sum(r["size_bytes"] for r in result.landed),
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


def _gate_share(lake: Lake, this_run: StageCounts) -> tuple[float, int, int]:
    """Quarantine share over all silver work not yet published to gold (incl. this run)."""
    rows = ledger_rows(lake)
    last_gold = max((r["recorded_at"] for r in rows if r["stage"] == "gold" and r["status"] == "succeeded"), default=None)
    read = this_run.rows_read
    quarantined = this_run.rows_quarantined
    for r in rows:
        if r["stage"] == "silver" and r["status"] in ("succeeded", "quality_gate") and (last_gold is None or r["recorded_at"] > last_gold):
            read += r["rows_read"] or 0
            quarantined += r["rows_quarantined"] or 0
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
) -> RunResult:
    """Process everything landed and not yet processed, through ``until``."""
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
            _run_stages(lake, s, ledger, result, until, threshold, progress, force_gold)
        except BaseException as exc:
            status = "quality_gate" if isinstance(exc, QualityGateError) else "failed"
            message = str(exc) if isinstance(exc, SaleslakeError) else f"{type(exc).__name__}: {exc}"
            ledger.record(StageRecord("run", status, started, utcnow(), error=message.splitlines()[0] if message else status))
            raise
        result.status = "succeeded"
        ledger.record(StageRecord("run", "succeeded", started, utcnow(), details={"message": result.message}))
        return result


def _run_stages(lake, s, ledger, result, until, threshold, progress, force_gold) -> None:
    from saleslake.silver.process import pending_objects, process_csv

    started = utcnow()
    objects, _, _ = pending_objects(lake)
    pending_bytes = sum(o["size_bytes"] for o in objects)
    ledger.record(StageRecord("bronze", "succeeded", started, utcnow(), details={"pending_objects": len(objects), "bytes": pending_bytes}))
    if until == "bronze":
        result.message = f"{len(objects)} landed object(s) waiting for silver"
        return

    started = utcnow()
    if progress:
        progress("silver", 0, pending_bytes)
    silver = process_csv(lake, s, (lambda n: progress("silver", n, None)) if progress else None)
    result.stages["silver"] = silver
    share, quarantined, read = _gate_share(lake, silver)
    # The gate guards gold publication; a run that stops at silver only reports the share.
    gate_failed = share > threshold and until == "gold"
    ledger.record(
        StageRecord("silver", "quality_gate" if gate_failed else "succeeded", started, utcnow(), counts=silver,
                    details={"quarantine_share": round(share, 6), "silver_version": _silver_version(lake)})
    )
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
        ledger.record(StageRecord("gold", "skipped", utcnow(), utcnow(), details={"silver_version": _silver_version(lake)}))
        return
    from saleslake.gold.build import build_gold

    started = utcnow()
    if progress:
        progress("gold", 0, None)
    gold = build_gold(lake, s, ledger.run_id, full_refresh=force_gold)
    facts = gold.tables.get("fact_sales", 0)  # one fact per valid silver line (reconciled by dbt tests)
    ledger.record(
        StageRecord("gold", "succeeded", started, utcnow(), counts=StageCounts(rows_read=facts, rows_valid=facts),
                    details={"silver_version": _silver_version(lake), "tables": gold.tables, "versions": gold.versions,
                             "fact_changes": gold.fact_changes, "timings": gold.timings})
    )
    result.gold = gold.tables
    result.message = "gold published"


def rebuild_gold(settings: Settings | None = None, wait_seconds: float = 0.0, progress: Progress | None = None) -> RunResult:
    """Rebuild gold from silver even when it is current."""
    return run("gold", settings=settings, wait_seconds=wait_seconds, progress=progress, force_gold=True,
               max_quarantine_share=1.0)


# -- read side ------------------------------------------------------------------------------


def status(limit: int = 20, settings: Settings | None = None) -> list[dict]:
    """Recent runs, newest first, with row accounting per stage (CONTRACT §1)."""
    _, lake = _resolve(settings)
    rows = ledger_rows(lake)
    runs: dict[str, dict] = {}
    for r in rows:
        entry = runs.setdefault(r["run_id"], {"run_id": r["run_id"], "command": r["command"], "status": None,
                                              "started_at": None, "finished_at": None, "error": None, "stages": {}})
        if r["stage"] == "run" or (r["command"].startswith("ingest") and entry["status"] is None):
            entry.update(status=r["status"], started_at=r["started_at"], finished_at=r["finished_at"], error=r["error"])
        if r["stage"] != "run":
            entry["stages"][r["stage"]] = {
                "status": r["status"],
                "rows_read": r["rows_read"], "rows_valid": r["rows_valid"],
                "rows_quarantined": r["rows_quarantined"], "rows_duplicate": r["rows_duplicate"],
                "rows_corrected": r["rows_corrected"],
                "details": json.loads(r["details"]) if r["details"] else None,
            }
    order = {"bronze": 0, "silver": 1, "gold": 2}
    for entry in runs.values():
        entry["stages"] = dict(sorted(entry["stages"].items(), key=lambda kv: order.get(kv[0], 9)))
    free = lock_is_free(lake)
    ordered = sorted(runs.values(), key=lambda e: (e["started_at"] is not None, e["started_at"]), reverse=True)
    for entry in ordered:
        if entry["status"] == "running" and free:
            entry["status"] = "interrupted"
        for key in ("started_at", "finished_at"):
            if entry[key] is not None:
                entry[key] = entry[key].isoformat()
    return ordered[:limit]


def query(sql: str, settings: Settings | None = None) -> pa.Table:
    """Read-only SQL over ``gold.*``, ``silver.*`` and ``system.*`` (committed snapshots)."""
    from saleslake.serve.query import run_query

    _, lake = _resolve(settings)
    return run_query(lake, sql)


def quarantine(reason: str | None = None, limit: int = 50, settings: Settings | None = None) -> pa.Table:
    """Quarantined rows, newest landed first, optionally only those with ``reason``."""
    from saleslake.serve.query import quarantine_rows

    _, lake = _resolve(settings)
    return quarantine_rows(lake, reason, limit)


def generate_csv(out: str | Path, rows: int = 100_000, regions: list[str] | None = None, error_rate: float = 0.02,
                 seed: int = 42, progress: Callable[[int], None] | None = None):
    """Write realistic regional CSV exports (see saleslake.sample.csv_export)."""
    from saleslake.sample.csv_export import generate_csv as generate

    if rows <= 0:
        raise UserError("--rows must be positive")
    if not 0.0 <= error_rate <= 1.0:
        raise UserError("--error-rate must be between 0 and 1")
    return generate(Path(out), rows=rows, regions=regions, error_rate=error_rate, seed=seed, progress=progress)


# -- local services -------------------------------------------------------------------------


def services(action: Literal["start", "stop", "status"], names: Sequence[str] = ("kafka",),
             settings: Settings | None = None, kafka_port: int | None = None,
             kafka_controller_port: int | None = None) -> dict[str, dict]:
    """Start, stop or describe local development services (state under ``<home>/services``).

    Returns, per service, its connection settings or status.
    """
    from saleslake.services.kafka import KafkaService, kafka_status, start_kafka, stop_kafka

    s, _ = _resolve(settings)
    out: dict[str, dict] = {}
    for name in names:
        if name != "kafka":
            raise UserError(f"unknown service {name!r}; available: kafka")
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

