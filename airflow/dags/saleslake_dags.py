"""saleslake's Airflow 3 DAGs: thin layers over :mod:`saleslake.api`, no pipeline logic here.

- ``saleslake_batch``, on ``orchestration.batch_schedule`` (@daily): preflight → land_csv →
  extract_postgres → silver → quality_gate, which updates the asset ``saleslake://silver``.
- ``saleslake_gold``, on ``saleslake://silver`` or ``saleslake://stream``: build_gold (updates
  ``saleslake://gold`` when it made a new release) → publish (PostgreSQL, when configured).
- ``saleslake_stream``, every ``orchestration.stream_interval_seconds``: consume (a bounded
  micro-batch run) → check_lag, and announce_new_lines, which updates ``saleslake://stream``
  only when new lines reached silver.
- ``saleslake_monitor``, every ``orchestration.monitor_interval_minutes``: check_health.

Settings come from the environment (``SALESLAKE_HOME``, ``SALESLAKE_CONFIG``,
``SALESLAKE_<SECTION>__<KEY>``) and are resolved inside each task. Only what the DAG
definitions need (schedules, retries) is read when the file is parsed, with a fallback to
the defaults so that a configuration error never breaks the import: ``preflight`` (first
task of the batch) fails on it instead, and every task fails on it with one clear line.

Every task alerts through :func:`saleslake.api.alert` when it has failed for good (Airflow
runs ``on_failure_callback`` only after the last try; a retry runs ``on_retry_callback``).
Errors the user must fix (bad input, bad configuration, the quality gate) fail at once
without retries; anything else is retried ``orchestration.retries`` times.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from airflow.sdk import Asset, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from saleslake import api

log = logging.getLogger("saleslake.airflow")

# The assets, each updated when the lake has committed something downstream may use:
SILVER = Asset(name="saleslake_silver", uri="saleslake://silver")  # a batch passed the quality gate
STREAM = Asset(name="saleslake_stream", uri="saleslake://stream")  # new point-of-sale lines in silver
GOLD = Asset(name="saleslake_gold", uri="saleslake://gold")  # a new gold release

# How long a task waits for another run's lake lock (the batch and gold DAGs, or a CLI run)
# before it fails and is retried: a gold build on a large lake takes minutes, not half an hour.
LOCK_WAIT_SECONDS = 1800.0
START_DATE = datetime(2024, 1, 1, tzinfo=UTC)  # any past date: catchup is off, so only the latest run runs

# Problems found while parsing this file; preflight fails on them (the import itself never does).
PARSE_PROBLEMS: list[str] = []


def _first_line(exc: BaseException | None) -> str:
    text = str(exc) if exc is not None else ""
    return text.splitlines()[0] if text.strip() else (type(exc).__name__ if exc is not None else "unknown error")


def _orchestration_at_parse_time():
    """``settings.orchestration``, or its defaults when the configuration cannot be read."""
    try:
        return api.settings().orchestration
    except Exception as exc:
        PARSE_PROBLEMS.append(f"configuration: {_first_line(exc)}")
        log.warning("saleslake configuration unreadable, DAGs use default schedules: %s", _first_line(exc))
        return api.Settings.model_construct().orchestration


def _batch_schedule(orchestration) -> str:
    """The configured batch schedule when Airflow accepts it, else @daily (and a parse problem)."""
    from airflow.sdk import CronTriggerTimetable

    schedule = orchestration.batch_schedule
    if schedule in ("@once", "@continuous"):  # not cron presets, but schedules Airflow knows
        return schedule
    try:
        CronTriggerTimetable(schedule, timezone=UTC).validate()  # cron expression or preset (@daily, ...)
    except Exception as exc:
        PARSE_PROBLEMS.append(f"orchestration.batch_schedule {schedule!r} is not a cron expression: {_first_line(exc)}")
        return "@daily"
    return schedule


ORCHESTRATION = _orchestration_at_parse_time()


# -- failures and alerts --------------------------------------------------------------------


class UnhealthyLake(AirflowFailException):
    """The monitor found problems; it has already sent its own (detailed) alert."""


class PreflightFailed(AirflowException):
    """A required preflight check failed; retried, since a service may be back by then."""


def alert_task_failure(context) -> None:
    """``on_failure_callback`` of every task: one alert per finally failed task."""
    ti = context["ti"]
    exc = context.get("exception")
    if isinstance(exc, UnhealthyLake):
        return
    cause = exc.__cause__ if exc is not None and exc.__cause__ is not None else exc
    error = _first_line(exc)
    details = {
        "dag_id": ti.dag_id,
        "task_id": ti.task_id,
        "run_id": ti.run_id,
        "try_number": ti.try_number,
        "error": error,
        "error_type": type(cause).__name__ if cause is not None else None,
        "log_url": getattr(ti, "log_url", None),
    }
    title = f"{ti.dag_id}.{ti.task_id} failed"
    text = f"task {ti.task_id} of {ti.dag_id} failed (run {ti.run_id}, try {ti.try_number}): {error}"
    try:
        settings = api.settings()
    except Exception as config_error:
        log.error("ALERT %s: %s (not sent to webhook/e-mail: %s)", title, text, _first_line(config_error))
        return
    api.alert(title, text, severity="error", details=details, settings=settings)


def _is_lock_busy(exc: BaseException) -> bool:
    # LockBusyError is a UserError but worth a retry (another run held the lock all along)
    return isinstance(exc, api.LockBusyError)


@contextmanager
def user_errors_fail_fast():
    """Turn errors a retry cannot fix (bad input or configuration, the quality gate) into
    AirflowFailException, so the task fails and alerts now instead of after the retries."""
    try:
        yield
    except (api.UserError, api.QualityGateError) as exc:
        if _is_lock_busy(exc):
            raise
        raise AirflowFailException(str(exc)) from exc


def task_settings():
    """Settings for one task; a relative lake home is refused because tasks do not run in
    a fixed working directory."""
    with user_errors_fail_fast():
        settings = api.settings()
    if not Path(settings.home).is_absolute():
        raise AirflowFailException(
            f"the lake home {str(settings.home)!r} is relative; set SALESLAKE_HOME to an absolute path for Airflow"
        )
    return settings


DEFAULT_ARGS = {
    "owner": "saleslake",
    "retries": ORCHESTRATION.retries,
    "retry_delay": timedelta(minutes=ORCHESTRATION.retry_delay_minutes),
    "on_failure_callback": alert_task_failure,
}
COMMON = {
    "start_date": START_DATE,
    "catchup": False,
    "max_active_runs": 1,
    "default_args": DEFAULT_ARGS,
    "tags": ["saleslake"],
}

# Downstream of a step that may be skipped by configuration (no inbox, no extract): run
# unless something upstream failed.
AFTER_OPTIONAL = "none_failed"


def _emit(asset: Asset, extra: dict) -> None:
    """Attach ``extra`` to the asset event Airflow records when the task succeeds."""
    get_current_context()["outlet_events"][asset].extra = extra


# -- saleslake_batch ----------------------------------------------------------------------


@task
def preflight() -> dict:
    """``saleslake doctor``: fail with every failed required check and its fix."""
    if PARSE_PROBLEMS:
        raise AirflowFailException("; ".join(PARSE_PROBLEMS))
    settings = task_settings()
    checks = api.doctor(settings=settings)
    for check in checks:
        state = "ok" if check.ok else ("FAIL" if check.required else "warn")
        log.info("%-4s %-20s %s", state, check.name, check.detail)
    failed = [c for c in checks if c.required and not c.ok]
    if failed:
        raise PreflightFailed(
            "preflight failed: "
            + "; ".join(f"{c.name}: {c.detail}" + (f" (fix: {c.hint})" if c.hint else "") for c in failed)
        )
    return {c.name: bool(c.ok) for c in checks}


def _inbox_batches(inbox: Path, source: str) -> list[tuple[list[Path], str | None]]:
    """What to land: the ``*.csv`` files directly in the inbox as ``source``, and each
    subfolder as a source of its own named after the folder (its ``*.csv`` files, as
    ``saleslake ingest csv FOLDER`` does)."""
    entries = sorted(inbox.iterdir())
    batches: list[tuple[list[Path], str | None]] = []
    files = [p for p in entries if p.is_file() and p.suffix.lower() == ".csv"]
    if files:
        batches.append((files, source))
    folders = [p for p in entries if p.is_dir() and not p.name.startswith(".")]
    if folders:
        batches.append((folders, None))
    return batches


@task
def land_csv() -> dict:
    """Land the exports in ``orchestration.csv_inbox`` (idempotent: files already in bronze
    are no-ops). A file that cannot be landed fails the task after the others landed."""
    settings = task_settings()
    inbox = settings.orchestration.csv_inbox
    if inbox is None:
        raise AirflowSkipException("orchestration.csv_inbox is not set: no CSV exports to land")
    if not inbox.is_absolute() or not inbox.is_dir():
        raise AirflowFailException(f"orchestration.csv_inbox {str(inbox)!r} must be an existing absolute folder")
    done = {"landed": 0, "already_landed": 0, "header_only": 0, "bytes": 0}
    errors: list[Exception] = []
    with user_errors_fail_fast():
        for paths, source in _inbox_batches(inbox, settings.orchestration.csv_source):
            result = api.ingest_csv(paths, source=source, settings=settings, wait_seconds=LOCK_WAIT_SECONDS)
            done["landed"] += len(result.landed)
            done["already_landed"] += len(result.already_landed)
            done["header_only"] += len(result.header_only)
            done["bytes"] += sum(r["size_bytes"] for r in result.landed)
            errors += result.errors
    log.info("landed %(landed)d file(s), %(already_landed)d already in bronze, %(header_only)d header-only", done)
    if errors:  # a bad file will not fix itself: fail now, alert, land it again once it is fixed
        raise AirflowFailException(
            f"{len(errors)} file(s) could not be landed: " + "; ".join(_first_line(e) for e in errors)
        ) from errors[0]
    return done


@task(trigger_rule=AFTER_OPTIONAL)
def extract_postgres() -> dict:
    """Incremental extract of the operational database (``orchestration.extract_postgres``)."""
    settings = task_settings()
    if not settings.orchestration.extract_postgres:
        raise AirflowSkipException("orchestration.extract_postgres is off: the operational database is not extracted")
    with user_errors_fail_fast():
        result = api.ingest_postgres(settings=settings, wait_seconds=LOCK_WAIT_SECONDS)
    return {
        "extract_seq": result.extract_seq,
        "tables": result.tables,
        "rows": result.rows,
        "removed": result.removed,
        "lines_valid": result.silver.rows_valid,
    }


def _counts(counts) -> dict:
    return {
        name: getattr(counts, name)
        for name in ("rows_read", "rows_valid", "rows_quarantined", "rows_duplicate", "rows_corrected")
    }


@task(trigger_rule=AFTER_OPTIONAL)
def silver() -> dict:
    """Process everything landed and not yet in silver (idempotent)."""
    settings = task_settings()
    with user_errors_fail_fast():
        result = api.run(until="silver", settings=settings, wait_seconds=LOCK_WAIT_SECONDS)
    counts = result.stages.get("silver")
    return {"run_id": result.run_id, "message": result.message, **(_counts(counts) if counts else {})}


@task(outlets=[SILVER])
def quality_gate() -> dict:
    """The quarantine share since gold was last built; above the threshold the task fails
    and the silver asset is not updated, so gold is not rebuilt."""
    settings = task_settings()
    with user_errors_fail_fast():
        gate = api.quality_gate(settings=settings)
    _emit(SILVER, gate)
    return gate


@dag(
    dag_id="saleslake_batch",
    schedule=_batch_schedule(ORCHESTRATION),
    **COMMON,
    doc_md="Daily batch: preflight → land CSV exports → extract PostgreSQL → silver → quality gate; "
    "updates the `saleslake://silver` asset, which triggers `saleslake_gold`.",
)
def saleslake_batch():
    preflight() >> land_csv() >> extract_postgres() >> silver() >> quality_gate()


saleslake_batch()


# -- saleslake_gold -----------------------------------------------------------------------


@task(outlets=[GOLD])
def build_gold() -> dict:
    """Build gold from silver with dbt. When gold already reflects silver the task is skipped,
    so the gold asset gets an event only for a new gold release."""
    settings = task_settings()
    with user_errors_fail_fast():
        result = api.run(until="gold", publish=False, settings=settings, wait_seconds=LOCK_WAIT_SECONDS)
    if result.gold is None:
        raise AirflowSkipException(f"{result.message}: no new gold release (run {result.run_id})")
    out = {"run_id": result.run_id, "message": result.message, "tables": result.gold}
    _emit(GOLD, out)
    return out


@task(trigger_rule=AFTER_OPTIONAL)
def publish() -> dict:
    """Publish the latest gold release to the PostgreSQL warehouse when
    ``postgres.publish_after_gold`` (also after an unchanged gold: a release already in the
    warehouse is not sent again, one that failed to publish before is)."""
    settings = task_settings()
    if not settings.postgres.publish_after_gold:
        raise AirflowSkipException("postgres.publish_after_gold is off: gold is not published to PostgreSQL")
    with user_errors_fail_fast():
        done = api.publish_postgres(settings=settings)
    return {
        "release_id": done.release_id,
        "schema": done.schema,
        "rows_sent": done.rows_sent,
        "skipped": bool(done.skipped),
    }


@dag(
    dag_id="saleslake_gold",
    schedule=(SILVER | STREAM),
    **COMMON,
    doc_md="Gold: dbt build of the star schema whenever silver changed (batch or stream), then "
    "publish to PostgreSQL when configured; updates the `saleslake://gold` asset.",
)
def saleslake_gold():
    build_gold() >> publish()


saleslake_gold()


# -- saleslake_stream ---------------------------------------------------------------------


@task
def consume() -> dict:
    """One bounded micro-batch run: consume until the topic is idle or
    ``orchestration.stream_max_seconds`` have passed (exactly once, see saleslake.pipeline.stream)."""
    settings = task_settings()
    with user_errors_fail_fast():
        result = api.stream(until_idle=True, max_seconds=settings.orchestration.stream_max_seconds, settings=settings)
    return {
        "run_id": result.run_id,
        "records": result.records,
        "batches": result.batches,
        **_counts(result.counts),
        "lag": {str(p): n for p, n in result.lag.items()},
        "total_lag": sum(result.lag.values()),
        "stopped_by": result.stopped_by,
        "seconds": round(result.seconds, 3),
    }


@task
def check_lag() -> dict:
    """Alert (warning) when the messages on the broker not yet in silver are more than
    ``monitor.max_stream_lag``: once when the lag crosses the limit, not every 30 s while it
    stays above (the monitor repeats it every interval)."""
    settings = task_settings()
    with user_errors_fail_fast():
        lag = api.stream_lag(settings=settings)  # all partitions, whatever this run got assigned
    total, limit = sum(lag.values()), settings.monitor.max_stream_lag
    over = total > limit
    # the latest earlier result of this task (map index -1 asks for one value, not the list of all runs)
    previous = get_current_context()["ti"].xcom_pull(task_ids="check_lag", map_indexes=-1, include_prior_dates=True)
    was_over = bool(previous and previous.get("over"))
    if over and not was_over:
        api.alert(
            f"saleslake_stream lag {total:,} above {limit:,}",
            f"{total:,} point-of-sale messages on {settings.kafka.topic} are not in silver yet (limit {limit:,})",
            severity="warning",
            details={"topic": settings.kafka.topic, "lag": lag, "total_lag": total, "max_stream_lag": limit},
            settings=settings,
        )
    elif was_over and not over:
        log.info("stream lag back to %d (limit %d)", total, limit)
    return {"total_lag": total, "limit": limit, "over": over}


@task(outlets=[STREAM])
def announce_new_lines(consumed: dict) -> dict:
    """Update the stream asset only when new lines reached silver: a skipped task records no
    asset event, so gold is not rebuilt every 30 s for nothing."""
    lines = consumed["rows_valid"]
    if lines == 0:
        raise AirflowSkipException(f"no new lines reached silver ({consumed['records']} record(s) consumed)")
    extra = {"lines": lines, "records": consumed["records"], "run_id": consumed["run_id"]}
    _emit(STREAM, extra)
    return extra


@dag(
    dag_id="saleslake_stream",
    schedule=timedelta(seconds=ORCHESTRATION.stream_interval_seconds),
    **COMMON,
    doc_md="Point-of-sale stream: a bounded micro-batch run every interval, a lag check, and the "
    "`saleslake://stream` asset when new lines reached silver.",
)
def saleslake_stream():
    consumed = consume()
    consumed >> check_lag()
    announce_new_lines(consumed)


saleslake_stream()


# -- saleslake_monitor --------------------------------------------------------------------


@task(retries=0)  # the next monitor run is the retry; no retry storm on a standing problem
def check_health() -> dict:
    """Freshness per source, quarantine rate and stream lag against ``[monitor]``; when
    unhealthy: one warning alert with the details, and the task fails so the UI shows it."""
    settings = task_settings()
    with user_errors_fail_fast():
        health = api.health(settings=settings)
    summary = {
        "checked_at": health.checked_at,
        "problems": list(health.problems),
        "sources": health.sources,
        "quarantine": health.quarantine,
        "stream": health.stream,
    }
    if health.ok:
        log.info("healthy: %d source(s), quarantine share %s", len(health.sources), health.quarantine.get("share"))
        return summary
    api.alert(
        f"saleslake health: {len(health.problems)} problem(s)",
        "\n".join(health.problems),
        severity="warning",
        details=summary,
        settings=settings,
    )
    raise UnhealthyLake("; ".join(health.problems))


@dag(
    dag_id="saleslake_monitor",
    schedule=timedelta(minutes=ORCHESTRATION.monitor_interval_minutes),
    **COMMON,
    doc_md="Health: freshness per source, quarantine rate, Kafka lag; alerts (warning) and fails when unhealthy.",
)
def saleslake_monitor():
    check_health()


saleslake_monitor()
