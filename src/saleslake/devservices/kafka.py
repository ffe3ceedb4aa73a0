"""One local Apache Kafka 4.x broker in KRaft mode on 127.0.0.1, fetched with Maven.

``saleslake services start|stop|status kafka`` is built on this module:

* :func:`fetch_jars` downloads the broker jars once into a per-user cache with
  ``mvn dependency:copy-dependencies`` driven by the small pom shipped next to this module
  (``kafka_pom.xml``; no binary is committed).
* :func:`start_kafka` formats KRaft storage once (``kafka.tools.StorageTool format``),
  starts ``kafka.Kafka`` detached (combined broker + controller, node id 1, listeners on
  127.0.0.1 only), waits until it answers real Kafka protocol requests (ApiVersions and
  Metadata listing this broker) and returns the client settings.
* :func:`stop_kafka` sends SIGTERM (controlled shutdown), waits, then SIGKILL.
* :func:`kafka_status` reports whether it runs, its pid and its address.

Users with their own cluster never need any of this: they set ``bootstrap.servers``.

State directory layout (``KafkaService.home``, e.g. ``<lake home>/services/kafka``)::

    server.properties   log4j2.properties   kafka.pid   kafka.json (pid, ports, version)
    data/               KRaft metadata log and topic partitions
    logs/server.log     broker log (log4j2, rolled at 10 MB)
    logs/kafka.out      JVM stdout/stderr
    logs/format.log     output of the storage format step
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from saleslake import __version__ as saleslake_version
from saleslake.devservices import jvm
from saleslake.devservices.jvm import JarFetchError, JavaNotFoundError, JavaProgram, MavenNotFoundError
from saleslake.devservices.ports import file_lock, port_holder
from saleslake.devservices.process import (
    create_time,
    is_running,
    last_error_line,
    launch_detached,
    recorded_process_runs,
    run_logged,
    stop_recorded,
    terminate,
)
from saleslake.errors import TransientError, UserError

HOST = "127.0.0.1"
DEFAULT_PORT = 9092
NODE_ID = 1

BROKER_MAIN = "kafka.Kafka"
STORAGE_TOOL_MAIN = "kafka.tools.StorageTool"
STARTED_MARKER = "Kafka Server started"  # "[KafkaRaftServer nodeId=1] Kafka Server started"

KAFKA = JavaProgram(
    name="kafka",
    pom="kafka_pom.xml",
    version_property="kafka.version",
    goal="copy-dependencies",
    main_jar="kafka_2.13-*.jar",
    product="Kafka",
    runs="the local Kafka broker",
    instead="point bootstrap.servers at an existing Kafka",
)

# --------------------------------------------------------------------------- errors


class PortInUseError(UserError):
    """A port the broker needs on 127.0.0.1 is taken by another program."""


class KafkaRunningElsewhereError(UserError):
    """This state directory's broker already runs, but on other ports than requested."""


KafkaFetchError = JarFetchError  # Maven could not download the broker jars


class KafkaStartError(TransientError):
    """The broker did not come up (crashed or did not answer within the timeout)."""


# --------------------------------------------------------------------------- the service


@dataclass
class KafkaService:
    """Where one local broker keeps its state and which ports it uses.

    ``controller_port`` defaults to ``port + 1``; ``cache_dir`` (the jar cache, shared by
    every state directory of the same user) defaults to :func:`default_cache_dir`.
    """

    home: Path
    port: int = DEFAULT_PORT
    controller_port: int | None = None
    cache_dir: Path | None = None
    heap: str = "512m"
    start_timeout: float = 60.0
    stop_timeout: float = 30.0
    extra_properties: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.home = Path(self.home).expanduser().absolute()
        self.port = int(self.port)
        if self.controller_port is None:
            self.controller_port = self.port + 1
        self.controller_port = int(self.controller_port)
        if self.cache_dir is not None:
            self.cache_dir = Path(self.cache_dir).expanduser().absolute()
        for name, value in (("port", self.port), ("controller port", self.controller_port)):
            if not 1 <= value <= 65535:
                raise UserError(f"Kafka {name} {value} is not a TCP port (1-65535)")
        if self.port == self.controller_port:
            raise UserError(f"Kafka port and controller port are both {self.port}: choose two different ports")

    @classmethod
    def for_lake(cls, lake_home: Path | str, **kwargs: Any) -> KafkaService:
        """The broker that belongs to a lake: state under ``<lake home>/services/kafka``."""
        return cls(home=Path(lake_home) / "services" / "kafka", **kwargs)

    # paths -------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "server.log"

    @property
    def stdout_file(self) -> Path:
        return self.log_dir / "kafka.out"

    @property
    def config_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def log4j_file(self) -> Path:
        return self.home / "log4j2.properties"

    @property
    def pid_file(self) -> Path:
        return self.home / "kafka.pid"

    @property
    def state_file(self) -> Path:
        return self.home / "kafka.json"

    @property
    def jar_cache(self) -> Path:
        return self.cache_dir or default_cache_dir()

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.port}"


# --------------------------------------------------------------------------- jars


def kafka_version() -> str:
    """The Kafka version the shipped pom pins (``<kafka.version>``)."""
    return KAFKA.version()


def default_cache_dir() -> Path:
    """Per-user jar cache (:func:`saleslake.devservices.jvm.cache_root`), then ``kafka/<version>``."""
    return KAFKA.default_cache_dir()


def find_maven() -> str:
    return jvm.find_maven(KAFKA)


def fetch_jars(cache_dir: Path | None = None, *, quiet: bool = True) -> Path:
    """Download the broker jars into ``<cache_dir>/lib`` once (``mvn dependency:copy-dependencies``
    on ``kafka_pom.xml``) and return that folder."""
    return jvm.fetch_jars(KAFKA, cache_dir, quiet=quiet)


# --------------------------------------------------------------------------- java


def find_java() -> str:
    """The ``java`` to run: ``$JAVA_HOME/bin/java`` or ``java`` on PATH, Java 17 or newer."""
    return jvm.find_java(KAFKA)


# --------------------------------------------------------------------------- start / stop / status


def connection_settings(service: KafkaService) -> dict[str, str]:
    """Client settings for this broker, usable as a confluent-kafka config as is."""
    return {"bootstrap.servers": service.bootstrap_servers}


def start_kafka(service: KafkaService) -> dict[str, str]:
    """Start the broker (fetching jars and formatting storage when needed) and wait until it
    answers. Idempotent: an already running broker of this state directory is reused."""
    service.home.mkdir(parents=True, exist_ok=True)
    with file_lock(service.home / ".lock"):
        state = _running_state(service)
        if state is not None:
            if (state.get("port"), state.get("controller_port")) != (service.port, service.controller_port):
                raise KafkaRunningElsewhereError(
                    f"the local Kafka broker in {service.home} already runs on "
                    f"{HOST}:{state.get('port')} (controller {state.get('controller_port')}), "
                    f"not on port {service.port}: use bootstrap.servers={HOST}:{state.get('port')} "
                    f"or stop it first (saleslake services stop kafka)"
                )
            _wait_ready(service, int(state["pid"]))
            return connection_settings(service)
        _clear_state(service)

        java = find_java()
        assert service.controller_port is not None  # __post_init__ resolved it
        for what, port in (("broker", service.port), ("controller", service.controller_port)):
            _check_port_free(port, what)
        lib = fetch_jars(service.cache_dir)

        service.data_dir.mkdir(parents=True, exist_ok=True)
        service.log_dir.mkdir(parents=True, exist_ok=True)
        service.config_file.write_text(_server_properties(service), "utf-8")
        service.log4j_file.write_text(_log4j2_properties(service), "utf-8")
        if not (service.data_dir / "meta.properties").exists():
            _format_storage(service, java, lib)

        log_offset = service.log_file.stat().st_size if service.log_file.exists() else 0
        pid = _launch(service, java, lib)
        state = {
            "pid": pid,
            "create_time": create_time(pid),
            "port": service.port,
            "controller_port": service.controller_port,
            "version": kafka_version(),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        service.pid_file.write_text(f"{pid}\n", "utf-8")
        service.state_file.write_text(json.dumps(state, indent=2) + "\n", "utf-8")
        try:
            _wait_ready(service, pid, log_offset)
        except BaseException:
            terminate(pid, timeout=min(service.stop_timeout, 15.0))
            _clear_state(service)
            raise
    return connection_settings(service)


def stop_kafka(service: KafkaService) -> None:
    """Stop the broker: SIGTERM (controlled shutdown), wait up to ``stop_timeout``, then
    SIGKILL. Idempotent: nothing running is fine."""
    stop_recorded(service.home, lambda: _running_state(service), service.stop_timeout, lambda _: _clear_state(service))


def kafka_status(service: KafkaService) -> dict[str, Any]:
    """Whether this state directory's broker runs, with its pid and address."""
    state = _running_state(service) if service.home.exists() else None
    port = int(state["port"]) if state else service.port
    controller_port = int(state["controller_port"]) if state else service.controller_port
    return {
        "service": "kafka",
        "running": state is not None,
        "pid": int(state["pid"]) if state else None,
        "port": port,
        "controller_port": controller_port,
        "bootstrap.servers": f"{HOST}:{port}",
        "version": (state or {}).get("version") or kafka_version(),
        "started_at": (state or {}).get("started_at"),
        "home": str(service.home),
        "log": str(service.log_file),
    }


# --------------------------------------------------------------------------- internals


def _read_state(service: KafkaService) -> dict[str, Any] | None:
    try:
        state = json.loads(service.state_file.read_text("utf-8"))
    except (OSError, ValueError):
        state = None
    if not isinstance(state, dict) or "pid" not in state:
        try:  # a bare pid file (state file lost): ports are the configured ones
            pid = int(service.pid_file.read_text("utf-8").strip())
        except (OSError, ValueError):
            return None
        state = {"pid": pid, "port": service.port, "controller_port": service.controller_port}
    return state


def _running_state(service: KafkaService) -> dict[str, Any] | None:
    """The recorded state when its process is alive and really is this broker, else None."""
    state = _read_state(service)
    return state if recorded_process_runs(state, BROKER_MAIN, str(service.config_file)) else None


def _clear_state(service: KafkaService) -> None:
    service.pid_file.unlink(missing_ok=True)
    service.state_file.unlink(missing_ok=True)


def _check_port_free(port: int, what: str) -> None:
    holder = port_holder(port)
    if holder:
        option = "--port" if what == "broker" else "--controller-port"
        raise PortInUseError(
            f"cannot start the local Kafka {what}: {HOST}:{port} is already in use {holder}; "
            f"stop that program or choose another port ({option}); if it is a Kafka you run "
            f"yourself, set bootstrap.servers instead"
        )


def _server_properties(service: KafkaService) -> str:
    props: dict[str, str] = {
        # KRaft, one combined broker + controller, static single-voter quorum (ports may
        # change between starts: the voter set is read from here, not from the log)
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.voters": f"{NODE_ID}@{HOST}:{service.controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{service.port},CONTROLLER://{HOST}:{service.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{service.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(service.data_dir),
        # single node: every internal topic with replication factor 1, small footprint
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "share.coordinator.state.topic.num.partitions": "1",
        "auto.create.topics.enable": "false",
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
        "log.retention.hours": "168",
    }
    props.update({str(k): str(v) for k, v in service.extra_properties.items()})
    lines = ["# Written by saleslake on every start; edit extra_properties instead."]
    lines += [f"{key}={_escape_property(value)}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def _escape_property(value: str) -> str:
    return value.replace("\\", "\\\\")


def _log4j2_properties(service: KafkaService) -> str:
    log = _escape_property(str(service.log_file))
    pattern = _escape_property(str(service.log_dir / "server.log.%i"))
    return "\n".join(
        [
            "# Written by saleslake on every start.",
            "status = warn",
            "shutdownHook = disable",
            "appender.file.type = RollingFile",
            "appender.file.name = file",
            f"appender.file.fileName = {log}",
            f"appender.file.filePattern = {pattern}",
            "appender.file.layout.type = PatternLayout",
            "appender.file.layout.pattern = [%d] %p %m (%c)%n",
            "appender.file.policies.type = Policies",
            "appender.file.policies.size.type = SizeBasedTriggeringPolicy",
            "appender.file.policies.size.size = 10MB",
            "appender.file.strategy.type = DefaultRolloverStrategy",
            "appender.file.strategy.max = 3",
            "rootLogger.level = info",
            "rootLogger.appenderRef.file.ref = file",
            "logger.request.name = kafka.request.logger",
            "logger.request.level = warn",
            "",
        ]
    )


def _jvm_args(service: KafkaService, lib: Path) -> list[str]:
    return [
        "-Xms128m",
        f"-Xmx{service.heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        "-Djava.net.preferIPv4Stack=true",  # listen on 127.0.0.1, not ::ffff:127.0.0.1
        f"-Dlog4j2.configurationFile={service.log4j_file}",
        "-Dlog4j2.shutdownHookEnabled=false",
        f"-Dkafka.logs.dir={service.log_dir}",
        "-cp",
        f"{lib}{os.sep}*",
    ]


def _new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (as
    ``kafka-storage random-uuid``), never starting with '-' (it would read as an option)."""
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not value.startswith("-"):
            return value


def _format_storage(service: KafkaService, java: str, lib: Path) -> None:
    out_file = service.log_dir / "format.log"
    cmd = [
        java,
        *_jvm_args(service, lib),
        STORAGE_TOOL_MAIN,
        "format",
        "--config",
        str(service.config_file),
        "--cluster-id",
        _new_cluster_id(),
        "--ignore-formatted",
    ]
    try:
        with out_file.open("w", encoding="utf-8") as out:
            proc = run_logged(cmd, out, timeout=300)
    except subprocess.TimeoutExpired:
        raise KafkaStartError(
            f"formatting Kafka storage in {service.data_dir} took over 5 minutes; see {out_file}"
        ) from None
    if proc.returncode != 0:
        raise KafkaStartError(
            f"formatting Kafka storage in {service.data_dir} failed (status {proc.returncode}): "
            f"{last_error_line(out_file) or 'no message'}; see {out_file}"
        )


def _launch(service: KafkaService, java: str, lib: Path) -> int:
    """Start the JVM detached (its own session, reparented to init) and return its pid."""
    cmd = [java, *_jvm_args(service, lib), BROKER_MAIN, str(service.config_file)]
    pid = launch_detached(cmd, service.home, service.stdout_file)
    if isinstance(pid, str):
        raise KafkaStartError(f"could not start java for the Kafka broker: {pid}")
    return pid


def _wait_ready(service: KafkaService, pid: int, log_offset: int | None = None) -> None:
    deadline = time.monotonic() + service.start_timeout
    sources = (service.stdout_file, (service.log_file, log_offset or 0))
    last_problem = "no answer yet"
    while True:
        if not is_running(pid):
            raise KafkaStartError(
                f"the Kafka broker exited during start-up: "
                f"{last_error_line(*sources) or 'no error logged'}; "
                f"see {service.log_file} and {service.stdout_file}"
            )
        try:
            if _broker_answers(service):
                return
            last_problem = "metadata does not list this broker yet"
        except (OSError, struct.error, IndexError, ValueError) as exc:  # not up, or half up
            last_problem = str(exc) or type(exc).__name__
        if time.monotonic() >= deadline:
            hint = last_error_line(*sources)
            raise KafkaStartError(
                f"the Kafka broker did not answer on {service.bootstrap_servers} within "
                f"{service.start_timeout:.0f} s ({hint or last_problem}); last log lines in {service.log_file}"
            )
        time.sleep(0.25)


def _broker_answers(service: KafkaService, timeout: float = 5.0) -> bool:
    """True once the broker answers ApiVersions and its Metadata lists itself (and, when
    confluent-kafka is installed, an AdminClient can list topics)."""
    api_versions(HOST, service.port, timeout=timeout)
    brokers = metadata_brokers(HOST, service.port, timeout=timeout)
    if brokers.get(NODE_ID) != (HOST, service.port):
        return False
    try:
        from confluent_kafka.admin import AdminClient
    except ImportError:
        return True
    try:
        AdminClient({"bootstrap.servers": service.bootstrap_servers}).list_topics(timeout=timeout)
    except Exception:
        return False
    return True


# --------------------------------------------------------------------------- minimal Kafka protocol


def _request(host: str, port: int, api_key: int, version: int, body: bytes, *, flexible: bool, timeout: float) -> bytes:
    """Send one request (header v1, or v2 when ``flexible``) and return the response after
    the correlation id."""
    correlation_id = int.from_bytes(os.urandom(3), "big")
    client_id = b"saleslake"
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    if flexible:
        header += b"\x00"  # no tagged fields
    message = header + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(message)) + message)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        payload = _recv_exact(sock, size)
    (answered,) = struct.unpack(">i", payload[:4])
    if answered != correlation_id:
        raise ConnectionError(f"Kafka answered correlation id {answered}, expected {correlation_id}")
    return payload[4:]


def _recv_exact(sock: socket.socket, count: int) -> bytes:
    chunks, remaining = [], count
    while remaining:
        chunk = sock.recv(remaining)
        if not chunk:
            raise ConnectionError("Kafka closed the connection")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values[0] if len(values) == 1 else values

    def uvarint(self) -> int:
        value = shift = 0
        while True:
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    def compact_string(self) -> str | None:
        length = self.uvarint() - 1
        if length < 0:
            return None
        value = self.data[self.pos : self.pos + length].decode("utf-8")
        self.pos += length
        return value

    def skip_tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self.pos += self.uvarint()  # size


def _compact_string(value: str) -> bytes:
    raw = value.encode("utf-8")
    return bytes([len(raw) + 1]) + raw  # short strings only: one-byte varint


def api_versions(host: str, port: int, timeout: float = 5.0) -> dict[int, tuple[int, int]]:
    """ApiVersions v3: ``{api_key: (min_version, max_version)}``; raises on a Kafka error."""
    body = _compact_string("saleslake") + _compact_string(str(saleslake_version) or "0") + b"\x00"
    # ApiVersions answers with response header v0 (no tagged fields) even for v3
    reader = _Reader(_request(host, port, 18, 3, body, flexible=True, timeout=timeout))
    error = reader.take(">h")
    if error:
        raise ConnectionError(f"Kafka ApiVersions error code {error}")
    keys = {}
    for _ in range(reader.uvarint() - 1):
        api_key, low, high = reader.take(">hhh")
        reader.skip_tagged_fields()
        keys[api_key] = (low, high)
    return keys


def metadata_brokers(host: str, port: int, timeout: float = 5.0) -> dict[int, tuple[str, int]]:
    """Metadata v12 for no topics: ``{node_id: (host, port)}`` of the live brokers."""
    body = b"\x01" + b"\x00" + b"\x00" + b"\x00"  # topics=[], no auto-create, no authz ops, tags
    reader = _Reader(_request(host, port, 3, 12, body, flexible=True, timeout=timeout))
    reader.skip_tagged_fields()  # response header v1
    reader.take(">i")  # throttle_time_ms
    brokers = {}
    for _ in range(reader.uvarint() - 1):
        node_id = reader.take(">i")
        broker_host = reader.compact_string() or ""
        broker_port = reader.take(">i")
        reader.compact_string()  # rack
        reader.skip_tagged_fields()
        brokers[node_id] = (broker_host, broker_port)
    return brokers


__all__ = [
    "BROKER_MAIN",
    "STORAGE_TOOL_MAIN",
    "JavaNotFoundError",
    "KafkaFetchError",
    "KafkaRunningElsewhereError",
    "KafkaService",
    "KafkaStartError",
    "MavenNotFoundError",
    "PortInUseError",
    "api_versions",
    "connection_settings",
    "default_cache_dir",
    "fetch_jars",
    "find_java",
    "find_maven",
    "kafka_status",
    "kafka_version",
    "metadata_brokers",
    "start_kafka",
    "stop_kafka",
]
