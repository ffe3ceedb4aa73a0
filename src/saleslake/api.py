"""The public Python API: what the CLI, the Airflow DAGs and your own code call. Nothing
else of the package is public; these functions take a :class:`Settings` (default: the
resolved ``saleslake.toml`` and environment) and return plain results.

Example::

    from saleslake import api
    settings = api.settings(home="lakehouse")
    api.ingest_csv(["exports/"], settings=settings)
    result = api.run(settings=settings)
    api.query("SELECT sum(sales) FROM gold.fact_sales", settings=settings)

Errors: :class:`UserError` (bad input or configuration; exit code 1 in the CLI),
:class:`QualityGateError` (3), :class:`TransientError` (4: retry), :class:`SaleslakeError`
(their base).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Literal

import pyarrow as pa

from saleslake.bronze import LandResult
from saleslake.config import Settings, dsn_without_password, load_settings
from saleslake.errors import (
    ConfigError,
    LockBusyError,
    QualityGateError,
    SaleslakeError,
    TransientError,
    UserError,
)
from saleslake.lake import Lake
from saleslake.lake import require_local as _require_local
from saleslake.pipeline import batch
from saleslake.pipeline.batch import PostgresIngestResult, RunResult, Stage
from saleslake.pipeline.copy_lake import CopyResult
from saleslake.pipeline.demo import DemoResult
from saleslake.pipeline.runner import Progress
from saleslake.sources.csv import CsvOverrides
from saleslake.sources.remote import is_remote as _is_remote
from saleslake.storage.failures import reach_bucket as _reach_bucket

__all__ = [
    "SERVICES",
    "STARTED_BY_DEFAULT",
    "ConfigError",
    "CopyResult",
    "DemoResult",
    "LandResult",
    "LockBusyError",
    "PostgresIngestResult",
    "Progress",
    "QualityGateError",
    "RunResult",
    "SaleslakeError",
    "Settings",
    "Stage",
    "TransientError",
    "UserError",
    "alert",
    "copy_lake",
    "dashboard",
    "demo",
    "doctor",
    "freshness",
    "generate_csv",
    "generate_oltp",
    "health",
    "ingest_csv",
    "ingest_postgres",
    "produce",
    "publish_postgres",
    "quality_gate",
    "quarantine",
    "query",
    "rebuild_gold",
    "run",
    "services",
    "settings",
    "status",
    "stream",
    "stream_lag",
]


def settings(home: str | Path | None = None, **overrides) -> Settings:
    """Resolve settings (defaults < saleslake.toml < SALESLAKE_* env < arguments).

    ``api.settings(home="lakehouse", tax={"flat_rate": "0.08"})``"""
    return load_settings(home=home, **overrides)


#: Commands that work on a lake in a bucket (issue 16: the others still refuse one).
_ON_OBJECT_STORE = frozenset(
    {
        "ingest csv",
        "run",
        "quality gate",
        "status",
        "query",
        "quarantine",
        "freshness",
        "stream",
        "produce",
        "stream lag",
    }
)


def _resolve(s: Settings | None, command: str) -> tuple[Settings, Lake]:
    """The settings and their lake. ``command`` is refused on a lake in a bucket: only
    its Delta tables reach object storage so far (see :func:`saleslake.lake.require_local`)."""
    s = s or load_settings()
    lake = Lake(s.home, s.storage)
    if command not in _ON_OBJECT_STORE:
        _require_local(lake, f"`saleslake {command}`")
    elif not lake.is_local:
        _reach_bucket(s.storage, lake.location.bucket)
    return s, lake


def _dsn_option(dsn: str | None, s: Settings, role: str) -> str | None:
    """A ``--dsn`` given to a command, refused when it holds a password (visible in ``ps``),
    as the ``postgres.dsn`` setting is."""
    try:
        return dsn_without_password(dsn, s.postgres.password_env(role))
    except ValueError as exc:
        why = " (any user can read a command line with ps)" if "password" in str(exc) else ""
        raise UserError(f"--dsn: {exc}{why}") from None


# -- batch --------------------------------------------------------------------------------


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

    ``api.ingest_csv(["exports/emea/"], source="emea", decimal=",")``; a path may be
    ``s3://bucket/exports/`` (every CSV object under it) or one object's URI.

    ``reparse``: the files landed before, with the wrong options, are parsed again with
    these (see :func:`saleslake.bronze.reparse_csv`): the next ``run`` replaces their
    silver and quarantine rows, once; their source and currency stay unless given."""
    s, lake = _resolve(settings, "ingest csv")
    if decimal not in (None, ".", ","):
        raise UserError(f"--decimal must be '.' or ',', not {decimal!r}")
    if delimiter is not None and len(delimiter) != 1:
        raise UserError(
            f"--delimiter must be one character such as ',' ';' '|' or a tab ($'\\t' in bash), not {delimiter!r}"
        )
    overrides = CsvOverrides(delimiter=delimiter, decimal=decimal, date_format=date_format, encoding=encoding)
    # s3:// exports stay text (a Path would fold the //)
    files = [str(p) if _is_remote(p) else Path(p) for p in paths]
    return batch.ingest_csv(lake, s, files, source, overrides, currency, wait_seconds, progress, reparse)


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

    ``result = api.run(settings=settings); result.stages["silver"].rows_quarantined``

    ``publish``: publish gold to the PostgreSQL warehouse after building it (default:
    ``postgres.publish_after_gold``); the Airflow gold DAG passes False and publishes in a
    task of its own. Raises :class:`QualityGateError` when too many rows were quarantined."""
    s, lake = _resolve(settings, "run")
    threshold = s.quality.max_quarantine_share if max_quarantine_share is None else max_quarantine_share
    if not 0.0 <= threshold <= 1.0:
        raise UserError(f"--max-quarantine-share must be between 0 and 1, not {threshold}")
    publish = s.postgres.publish_after_gold if publish is None else publish
    return batch.run(lake, s, until, threshold, wait_seconds, progress, force_gold, publish)


def rebuild_gold(
    settings: Settings | None = None, wait_seconds: float = 0.0, progress: Progress | None = None
) -> RunResult:
    """Rebuild gold from silver even when it is current: ``api.rebuild_gold(settings=settings)``."""
    return run(
        "gold",
        settings=settings,
        wait_seconds=wait_seconds,
        progress=progress,
        force_gold=True,
        max_quarantine_share=1.0,
    )


def publish_postgres(dsn: str | None = None, schema: str | None = None, settings: Settings | None = None):
    """Publish the latest gold release into the PostgreSQL warehouse (star schema, see
    :mod:`saleslake.serve.postgres`); returns its :class:`PostgresPublication`.

    ``api.publish_postgres(schema="gold", settings=settings)``

    ``dsn`` defaults to the warehouse database as the warehouse role (password from
    ``SALESLAKE_POSTGRES_WAREHOUSE_PASSWORD[_FILE]``), ``schema`` to
    ``postgres.warehouse_schema``. Recorded in the ledger as stage ``publish_postgres``."""
    s, lake = _resolve(settings, "publish postgres")
    return batch.publish_postgres(lake, s, _dsn_option(dsn, s, "warehouse"), schema)


def ingest_postgres(
    dsn: str | None = None,
    tables: Sequence[str] | None = None,
    settings: Settings | None = None,
    wait_seconds: float = 0.0,
) -> PostgresIngestResult:
    """Incremental extract of the operational database into bronze and silver, exactly once
    (see saleslake.sources.postgres and saleslake.silver.oltp).

    ``api.ingest_postgres(tables=["customers"], settings=settings)``

    ``dsn`` defaults to the reader role's (``settings.postgres``); its password comes from
    ``SALESLAKE_POSTGRES_READER_PASSWORD[_FILE]``. ``tables`` limits the logical tables
    (orders and order_lines always go together)."""
    from saleslake.sources.postgres import resolve_tables

    s, lake = _resolve(settings, "ingest postgres")
    dsn = _dsn_option(dsn, s, "reader")
    return batch.ingest_postgres(lake, s, dsn, resolve_tables(tables), wait_seconds)


def quality_gate(max_quarantine_share: float | None = None, settings: Settings | None = None) -> dict:
    """Check the quarantine share of all silver work not yet in gold against the threshold
    (default ``quality.max_quarantine_share``).

    ``api.quality_gate(0.2)`` returns ``{"share", "rows_quarantined", "rows_read",
    "threshold"}``; raises QualityGateError above the threshold."""
    from saleslake.pipeline.gate import check_gate

    s, lake = _resolve(settings, "quality gate")
    return check_gate(lake, s.quality.max_quarantine_share if max_quarantine_share is None else max_quarantine_share)


def demo(
    rows: int = 100_000, settings: Settings | None = None, progress: Callable[[int], None] | None = None
) -> DemoResult:
    """Generate sample exports, land them, run every stage: ``api.demo(10_000).rows``.

    ``progress(n)``: n more sample rows are ready; they add up to ``rows`` when the
    generation step ends (landing and processing follow, not counted)."""
    from saleslake.pipeline.demo import run_demo

    s, _ = _resolve(settings, "demo")
    if rows <= 0:
        raise UserError("--rows must be positive")
    return run_demo(s, rows, progress)


# -- read side ------------------------------------------------------------------------------


def copy_lake(source: str | Path, target: str | Path, settings: Settings | None = None) -> CopyResult:
    """Copy the lake at ``source`` to ``target`` (each a folder or ``s3://bucket/prefix``)
    with its history, then verify it: per object size and SHA-256, per Delta table version
    and row count (see :mod:`saleslake.pipeline.copy_lake`). ``target`` must be empty or an
    interrupted copy of ``source``, which a rerun completes. The warehouse file and dbt's
    files are not copied: the next run rebuilds them from gold.

    ``api.copy_lake("lakehouse", "s3://lakehouse/prod").tables``"""
    from saleslake.pipeline.copy_lake import copy_lake as copy

    s = settings or load_settings()
    return copy(str(source), str(target), s)


def status(limit: int = 20, settings: Settings | None = None) -> list[dict]:
    """Recent runs, newest first, with row accounting per stage (CONTRACT §1).

    ``[r["status"] for r in api.status(5)]``"""
    from saleslake.serve.status import run_status

    _, lake = _resolve(settings, "status")
    return run_status(lake, limit)


def query(sql: str, settings: Settings | None = None, allow_files: Sequence[str | Path] = ()) -> pa.Table:
    """Read-only SQL over ``gold.*``, ``silver.*`` and ``system.*`` (committed snapshots).

    ``api.query("SELECT count(*) FROM gold.fact_sales").to_pylist()``

    ``allow_files``: folders whose files the SQL may read, besides ``query.allow_files``."""
    from saleslake.serve.query import run_query

    s, lake = _resolve(settings, "query")
    folders = [*s.query.allow_files, *(Path(p) for p in allow_files)]
    return run_query(lake, sql, folders)


def quarantine(reason: str | None = None, limit: int = 50, settings: Settings | None = None) -> pa.Table:
    """Quarantined rows, newest landed first, optionally only those with ``reason``.

    ``api.quarantine("invalid_date", limit=10).to_pylist()``"""
    from saleslake.serve.query import quarantine_rows

    _, lake = _resolve(settings, "quarantine")
    return quarantine_rows(lake, reason, limit)


def generate_csv(
    out: str | Path,
    rows: int = 100_000,
    regions: list[str] | None = None,
    error_rate: float = 0.02,
    seed: int = 42,
    progress: Callable[[int], None] | None = None,
):
    """Write realistic regional CSV exports (see saleslake.sample.csv_export).

    ``api.generate_csv("exports", rows=10_000, error_rate=0.02, seed=7)``"""
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
    ``SALESLAKE_POSTGRES_PASSWORD_FILE``, never from arguments.

    ``api.generate_oltp(orders=5_000); api.generate_oltp(mutate=True)``"""
    from saleslake.sample.oltp import generate_oltp as generate

    s = settings or load_settings()  # the operational database only: no lake
    dsn = _dsn_option(dsn, s, "owner")
    return generate(s.postgres, dsn=dsn, orders=orders, mutate=mutate, seed=seed, replace=replace, progress=progress)


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

    ``summary = api.produce(10_000, rate=500); summary.valid_lines``

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

    s, lake = _resolve(settings, "produce")
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


SERVICES = ("postgres", "kafka", "s3")
#: what ``services start`` without names starts: the S3 server only when named (it is
#: downloaded with Maven on first use, and only object-store lakes need it)
STARTED_BY_DEFAULT = ("postgres", "kafka")


def services(
    action: Literal["start", "stop", "status"],
    names: Sequence[str] | None = None,
    settings: Settings | None = None,
    kafka_port: int | None = None,
    kafka_controller_port: int | None = None,
    postgres_port: int | None = None,
    s3_port: int | None = None,
) -> dict[str, dict]:
    """Start, stop or describe local development services (state under ``<home>/services``).

    ``api.services("start", ["postgres"])["postgres"]["env"]``

    ``names`` default to :data:`STARTED_BY_DEFAULT` for ``start`` and to all of
    :data:`SERVICES` for ``stop`` and ``status``. Returns, per service, its connection
    settings or status; PostgreSQL's never hold a password (DSNs without one, and under
    ``env`` the ``SALESLAKE_POSTGRES_..._PASSWORD_FILE`` variables naming the files), nor
    does the S3 server's (its endpoint, and under ``env`` the ``SALESLAKE_STORAGE__…`` and
    ``SALESLAKE_S3_…_FILE`` variables; ``s3_port`` None: a free port).
    """
    s, _ = _resolve(settings, "services")
    out: dict[str, dict] = {}
    for name in names or (STARTED_BY_DEFAULT if action == "start" else SERVICES):
        if name not in SERVICES:
            raise UserError(f"unknown service {name!r}; available: {', '.join(SERVICES)}")
        if name == "postgres":
            out[name] = _postgres_service(action, s, postgres_port)
            continue
        if name == "s3":
            out[name] = _s3_service(action, s, s3_port)
            continue
        from saleslake.devservices.kafka import KafkaService, kafka_status, start_kafka, stop_kafka

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
    from saleslake.devservices.postgres import PostgresService, postgres_status, start_postgres, stop_postgres

    service = PostgresService.from_settings(s, port=port)
    if action == "start":
        return start_postgres(service)
    if action == "stop":
        stop_postgres(service)
        return {"running": False}
    return postgres_status(service)


def _s3_service(action: str, s: Settings, port: int | None) -> dict:
    from saleslake.devservices.s3 import S3Service, s3_status, start_s3, stop_s3

    service = S3Service.for_lake(s.home, port=port)
    if action == "start":
        return start_s3(service)
    if action == "stop":
        stop_s3(service)
        return {"running": False}
    return s3_status(service)


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

    ``api.stream(until_idle=True).records``

    Runs until ``stop`` (a ``threading.Event``) is set, or with ``until_idle`` until the
    lake holds every record of every partition of the topic (whichever member of the group
    holds them; raises :class:`saleslake.sources.backlog.PartitionsNotDrainedError` after
    ``stream.idle_wait_seconds`` without progress), or after ``max_seconds`` (a bounded
    micro-batch run, as the Airflow stream DAG does). Returns a
    :class:`saleslake.pipeline.stream.StreamResult`.
    """
    from saleslake.pipeline.stream import StreamOptions, run_stream

    s, lake = _resolve(settings, "stream")
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
    :func:`saleslake.serve.freshness.freshness`).

    ``{f["source_system"]: f["silver_age_seconds"] for f in api.freshness()}``"""
    from saleslake.serve.freshness import freshness as source_freshness

    _, lake = _resolve(settings, "freshness")
    return source_freshness(lake)


# -- orchestration and monitoring -----------------------------------------------------------


def doctor(settings: Settings | None = None, include_dbt: bool = True, home: str | Path | None = None) -> list:
    """Preflight checks (see :mod:`saleslake.doctor`): configuration, lake home and disk,
    package versions, the dbt project, PostgreSQL and Kafka reachability, the object store
    (endpoint, credentials, bucket, conditional puts) for an ``s3://`` home. Never raises for
    what it finds; a configuration error is the failed ``config`` check.

    ``[c for c in api.doctor() if not c.ok]``"""
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


def health(settings: Settings | None = None):
    """Freshness per source, recent quarantine rate and stream lag against the ``[monitor]``
    thresholds; returns a :class:`saleslake.serve.health.Health` (``.ok``, ``.problems``).

    ``api.health().problems``"""
    from saleslake.serve.health import check_health

    s, lake = _resolve(settings, "health")
    return check_health(lake, s)


def alert(
    title: str, text: str = "", severity: str = "error", details: dict | None = None, settings: Settings | None = None
):
    """Log an alert and send it to the configured webhook / e-mail (see :mod:`saleslake.alerts`);
    returns one :class:`saleslake.alerts.Delivery` per channel.

    ``api.alert("gold is stale", "no gold build since 06:00", severity="warning")``"""
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

    ``api.dashboard(port=8501)``

    It reads the lake's committed snapshots (gold at its latest release), so it works
    while a run writes. Binds 127.0.0.1 by default; an address that is not loopback is
    refused unless ``allow_remote`` (the dashboard has no login). Usage statistics are
    off. Raises UserError when the port is busy."""
    from saleslake.serve.dashboard.server import serve

    _, lake = _resolve(settings, "dashboard")
    return serve(lake.home, host, port, headless=headless, allow_remote=allow_remote)


def stream_lag(settings: Settings | None = None) -> dict[int, int]:
    """Point-of-sale messages per partition on the broker that silver does not hold yet,
    from the broker's high watermarks and the lake's committed positions (right whether or
    not a consumer runs; the stream DAG's lag check). Raises when the broker or topic is
    not there (see :func:`saleslake.serve.health.stream_lag`).

    ``sum(api.stream_lag().values())``"""
    from saleslake.serve.health import stream_lag as lag

    s, lake = _resolve(settings, "stream lag")
    return lag(lake, s)
