"""Preflight checks (``saleslake doctor``; the Airflow batch DAG's first task).

One :class:`Check` per concern, each with a fix hint when it fails. A check is *required*
when the configured pipeline cannot work without it: the lake home always; PostgreSQL
when the batch extracts it (``orchestration.extract_postgres``, or the lake already holds
extract positions) or gold is published to it (``postgres.publish_after_gold``); Kafka
when the lake already consumes the point-of-sale stream; the object store when the lake is
in a bucket (``s3://`` home; probed as a warning when only ``storage.endpoint_url`` is set).
Other services are still probed and reported, as warnings.

    from saleslake.doctor import run_checks
    for check in run_checks(settings): print(check.line())
"""

from __future__ import annotations

import shutil
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from saleslake.config import Settings
from saleslake.dbapi import one_row
from saleslake.errors import SaleslakeError
from saleslake.lake import Lake, TableLocation, open_delta

MIN_FREE_BYTES = 1 << 30  # below 1 GiB free, a 1M-line run may not fit
CORE_PACKAGES = ("duckdb", "deltalake", "pyarrow", "dbt-core", "dbt-duckdb", "confluent-kafka", "psycopg")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    hint: str = ""
    required: bool = True
    seconds: float = 0.0

    @property
    def state(self) -> str:
        return "ok" if self.ok else ("FAIL" if self.required else "warn")

    def line(self) -> str:
        text = f"{self.state:<4}  {self.name:<20} {self.detail}"
        return text + (f" — fix: {self.hint}" if not self.ok and self.hint else "")

    def as_dict(self) -> dict:
        return {**asdict(self), "state": self.state}


def failed_required(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.required and not c.ok]


def run_checks(settings: Settings, include_dbt: bool = True) -> list[Check]:
    """Every check, in a stable order; none raises."""
    lake = Lake(settings.home, settings.storage)
    probes: list[Callable[[], Check]] = [_python, _packages]
    s3_home = None if lake.is_local else (lake.location.bucket, lake.location.prefix)
    if s3_home is None:  # the home, disk and lock checks of a folder (an S3 lake's: below)
        probes += [lambda: _home(lake), lambda: _disk(lake), lambda: _lock(lake)]
    if s3_home is not None or settings.storage.endpoint_url:
        probes.append(lambda: _object_store(settings, s3_home))
    if include_dbt:
        probes.append(lambda: _dbt_project(settings))
    probes += [
        lambda: _postgres(settings, "reader", "postgres source", _postgres_source_required(settings, lake)),
        lambda: _postgres(settings, "warehouse", "postgres warehouse", settings.postgres.publish_after_gold),
        lambda: _kafka(settings, _kafka_required(lake)),
        _java,
    ]
    return [_timed(probe) for probe in probes]


def _timed(probe: Callable[[], Check]) -> Check:
    started = time.perf_counter()
    check = probe()
    check.seconds = round(time.perf_counter() - started, 3)
    return check


# -- environment ------------------------------------------------------------------------------


def _python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    ok = sys.version_info >= (3, 11)
    return Check(
        "python",
        ok,
        f"Python {version} at {sys.executable}",
        "use Python 3.11 or newer (scripts/setup.sh creates .venv with it)",
    )


def _packages() -> Check:
    """Installed versions against the pins the package was installed with."""
    from packaging.requirements import Requirement

    wanted = {}
    for text in metadata.requires("saleslake") or []:
        req = Requirement(text)
        if req.marker is None and req.name in CORE_PACKAGES:
            wanted[req.name] = req.specifier
    found, wrong = [], []
    for name in CORE_PACKAGES:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            wrong.append(f"{name} missing")
            continue
        found.append(f"{name} {version}")
        spec = wanted.get(name)
        if spec is not None and not spec.contains(version, prereleases=True):
            wrong.append(f"{name} {version} (wants {spec})")
    if wrong:
        return Check("packages", False, "; ".join(wrong), "reinstall: bash scripts/setup.sh (or pip install -e .)")
    return Check("packages", True, ", ".join(found))


def _java() -> Check:
    from saleslake.devservices.kafka import find_java

    try:
        java = find_java()
    except SaleslakeError as exc:
        return Check(
            "java",
            False,
            str(exc).split(":")[0],
            "install a JDK 17+ (only the local Kafka broker and S3 server need it)",
            required=False,
        )
    return Check("java", True, f"{java} (for the local Kafka broker and S3 server)", required=False)


# -- the lake ---------------------------------------------------------------------------------


def _home(lake: Lake) -> Check:
    """The lake home exists (or can be created) and takes a file write and delete."""
    home = lake.home
    try:
        home.mkdir(parents=True, exist_ok=True)
        probe = home / f".doctor-{uuid.uuid4().hex}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return Check(
            "home",
            False,
            f"{home} is not writable: {reason}",
            "choose a writable directory with --home / SALESLAKE_HOME, or fix its owner and permissions",
        )
    return Check("home", True, f"{home.resolve()} is writable")


def _existing_parent(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _disk(lake: Lake) -> Check:
    where = _existing_parent(lake.home)
    try:
        free = shutil.disk_usage(where).free
    except OSError as exc:
        return Check("disk", False, f"cannot read free space at {where}: {exc.strerror}", required=False)
    detail = f"{free / (1 << 30):,.1f} GiB free at {where}"
    return Check("disk", free >= MIN_FREE_BYTES, detail, "free some space or move the lake (--home)", required=False)


def _lock(lake: Lake) -> Check:
    from saleslake.runs import _holder_message, lock_is_free

    if lock_is_free(lake):
        return Check("run lock", True, "free", required=False)
    # a held lock is normal while a run works; it is a finding, not a failure
    return Check("run lock", True, _holder_message(lake), required=False)


def _dbt_project(settings: Settings) -> Check:
    """``dbt parse`` of the packaged project, on a throwaway warehouse (the lake untouched)."""
    from saleslake.gold.build import DBT_PROJECT_DIR, run_dbt

    try:
        version = metadata.version("dbt-core")
        with tempfile.TemporaryDirectory(prefix="saleslake-doctor-") as scratch:
            result = run_dbt(Lake(Path(scratch)), settings, ["parse"])
        nodes = len(getattr(result, "nodes", {}) or {})
    except Exception as exc:
        return Check(
            "dbt project",
            False,
            f"{DBT_PROJECT_DIR}: {str(exc).splitlines()[0] if str(exc) else exc!r}",
            "reinstall the package (bash scripts/setup.sh); dbt-core must be below 1.12",
        )
    detail = f"{DBT_PROJECT_DIR.name} parses with dbt-core {version}" + (f" ({nodes} nodes)" if nodes else "")
    return Check("dbt project", True, detail)


# -- object storage ---------------------------------------------------------------------------

#: Where the object store check writes its probe objects, under the lake's prefix.
PROBE_PREFIX = "_saleslake/doctor"


def _object_store(settings: Settings, s3_home: tuple[str, str] | None) -> Check:
    """The endpoint answers, takes the credentials, and (for an ``s3://`` home) the bucket
    exists, takes a write and refuses a conditional put on an existing key (412): delta-rs
    commits and the lake lease rely on that. Required when the lake is in the bucket; a
    warning otherwise (the settings are there for ``s3://`` sources or copy-lake)."""
    from saleslake.storage import s3_filesystem
    from saleslake.storage.failures import endpoint_name, endpoint_refused, s3_failure
    from saleslake.storage.objects import S3Objects

    storage, required = settings.storage, s3_home is not None
    where = endpoint_name(storage)
    hint = "start the local server (saleslake services start s3) or fix [storage] and the S3 credentials"
    refused = endpoint_refused(storage.endpoint_url) if storage.endpoint_url else None
    if refused:
        return Check("object store", False, f"no S3 endpoint answered at {where}: {refused}", hint, required)
    bucket = s3_home[0] if s3_home else ""
    try:
        fs = s3_filesystem(storage)
        if s3_home is None:
            buckets = len(fs.ls(""))  # the credentials, through the endpoint
            detail = f"{where} answers and takes the credentials ({buckets} bucket(s); no s3:// home to probe)"
            return Check("object store", True, detail, required=False)
        store = S3Objects(fs, "/".join(part for part in s3_home if part))
        key = f"{PROBE_PREFIX}/{uuid.uuid4().hex}"
        try:
            if not store.create(key, b"probe"):
                return Check("object store", False, f"{where}: probe key {key} exists already", hint, required)
            overwrote = store.create(key, b"again")
        finally:
            store.delete(key)
    except SaleslakeError as exc:  # half a key pair, an unreadable key file
        return Check("object store", False, str(exc).splitlines()[0], hint, required)
    except Exception as exc:
        message = s3_failure(exc, storage, bucket) or f"{where}: {type(exc).__name__} (not an S3 answer)"
        return Check("object store", False, message, hint, required)
    if overwrote:
        return Check(
            "object store",
            False,
            f"{where} overwrote an existing key on a conditional put (If-None-Match: *): "
            "Delta commits and the lake lease would not be safe there",
            "use AWS S3 or an S3-compatible server that refuses such a put with 412 (S3Proxy, saleslake services start s3)",
            required,
        )
    return Check(
        "object store",
        True,
        f"{where} answers; bucket {bucket!r} takes the credentials and a write, and refuses a conditional put "
        "on an existing key (412)",
        required=required,
    )


# -- services ---------------------------------------------------------------------------------


def _postgres_source_required(settings: Settings, lake: Lake) -> bool:
    return settings.orchestration.extract_postgres or _has_table(lake.oltp_positions)


def _kafka_required(lake: Lake) -> bool:
    return _has_table(lake.bronze_events)


def _has_table(where: TableLocation) -> bool:
    """Whether the table exists; False when the store cannot be read (a bucket's lake with
    the endpoint down or wrong credentials: the object store check says so)."""
    try:
        return open_delta(where) is not None
    except Exception:
        return False


def _postgres(settings: Settings, role: str, name: str, required: bool) -> Check:
    from saleslake.connections.postgres import connect, redact

    pg = settings.postgres.model_copy(
        update={"connect_timeout_seconds": min(settings.postgres.connect_timeout_seconds, 5)}
    )
    where = redact(pg.dsn_for(role))
    why = "" if required else " (not used by this configuration)"
    try:
        with connect(pg, role, read_only=True, statement_timeout=5) as conn:
            version = one_row(conn.execute("SHOW server_version"))[0]
    except SaleslakeError as exc:
        hint = (
            "start the local server (saleslake services start postgres) or set postgres.host/port/dsn; "
            f"the password comes from {pg.password_env(role)}_FILE"
        )
        return Check(name, False, str(exc).splitlines()[0] + why, hint, required=required)
    return Check(name, True, f"{where} answers (PostgreSQL {version}){why}", required=required)


def _kafka(settings: Settings, required: bool) -> Check:
    from confluent_kafka import Consumer, KafkaException

    from saleslake.sources.kafka import consumer_config

    servers, topic = settings.kafka.bootstrap_servers, settings.kafka.topic
    why = "" if required else " (not used by this lake yet)"
    hint = "start the local broker (saleslake services start kafka) or set kafka.bootstrap_servers"
    refused = _refused(servers)
    if refused:
        return Check("kafka", False, f"no broker answered at {servers}: {refused}{why}", hint, required=required)
    # log_level 0: librdkafka would print every failed reconnect; the check says it once
    consumer = Consumer({**consumer_config(settings), "group.id": f"{settings.kafka.group_id}.doctor", "log_level": 0})
    try:
        metadata_ = consumer.list_topics(timeout=5.0)
    except KafkaException as exc:
        return Check(
            "kafka",
            False,
            f"no broker answered at {servers}: {exc.args[0].str() if exc.args else exc}{why}",
            hint,
            required=required,
        )
    finally:
        consumer.close()
    if topic not in metadata_.topics:
        return Check(
            "kafka",
            not required,
            f"{servers} answers but topic {topic!r} does not exist{why}",
            f"produce to it first (saleslake produce --topic {topic}) or set kafka.topic",
            required=required,
        )
    partitions = len(metadata_.topics[topic].partitions)
    return Check(
        "kafka", True, f"{servers} answers; topic {topic!r} has {partitions} partition(s){why}", required=required
    )


def _refused(servers: str) -> str | None:
    """Why no bootstrap server takes a TCP connection, or None when one does (the fast
    answer for a wrong port; librdkafka would keep retrying until its timeout)."""
    reasons = []
    for server in servers.split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit():
            return None  # not host:port (e.g. a URL form): let librdkafka judge
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=3.0):
                return None
        except OSError as exc:
            reasons.append(f"{server.strip()} {exc.strerror or type(exc).__name__}")
    return "; ".join(reasons)
