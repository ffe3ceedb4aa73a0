"""One local S3-compatible server (S3Proxy, filesystem backend) on 127.0.0.1, fetched with Maven.

``saleslake services start|stop|status s3`` is built on this module, the way the Kafka
broker is run (:mod:`saleslake.devservices.kafka`):

* the jar (S3Proxy's jar-with-dependencies) is downloaded once into the per-user jar cache
  by :func:`saleslake.devservices.jvm.fetch_jars` with ``s3proxy_pom.xml``;
* :func:`start_s3` generates an access key pair once (0600 files), writes the server's
  configuration (0600: it holds the secret, which so never appears on a command line),
  starts the JVM detached, waits until it answers HTTP, creates the bucket ``lakehouse``
  through the S3 API with that key pair and returns the endpoint and the variables a
  shell exports to use it (the ``…_FILE`` variables naming the key files, never a key);
* :func:`stop_s3` sends SIGTERM, waits, then SIGKILL; :func:`s3_status` says whether it runs.

S3Proxy answers 412 to a put with ``If-None-Match: *`` on an existing key, which is what
delta-rs commits rely on (``conditional_put=etag``). Users with a real bucket never need
any of this: they set ``[storage]`` and the credentials.

State directory layout (``S3Service.home``, e.g. ``<lake home>/services/s3``)::

    s3proxy.conf (0600)          server properties, with the credential
    access-key-id (0600)         the key pair clients use
    secret-access-key (0600)
    s3proxy.json                 pid, port, version; the port only once stopped
    data/<bucket>/...            the objects (jclouds filesystem-nio2 backend)
    logs/s3proxy.out             JVM stdout/stderr (S3Proxy logs to the console)
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from saleslake.config import S3_ACCESS_KEY_ENV, S3_SECRET_KEY_ENV, S3Credentials, StorageSettings
from saleslake.devservices.jvm import JavaProgram, fetch_jars, find_java
from saleslake.devservices.ports import file_lock, port_holder, write_secret
from saleslake.devservices.process import (
    create_time,
    is_running,
    last_error_line,
    launch_detached,
    recorded_process_runs,
    stop_recorded,
    terminate,
)
from saleslake.errors import TransientError, UserError

HOST = "127.0.0.1"
BUCKET = "lakehouse"
MAIN_CLASS = "org.gaul.s3proxy.Main"

S3PROXY = JavaProgram(
    name="s3proxy",
    pom="s3proxy_pom.xml",
    version_property="s3proxy.version",
    goal="copy",
    main_jar="s3proxy-*-jar-with-dependencies.jar",
    product="S3Proxy",
    runs="the local S3-compatible server",
    instead="point storage.endpoint_url at an existing S3-compatible server",
)

# --------------------------------------------------------------------------- errors


class S3PortInUseError(UserError):
    """The port asked for on 127.0.0.1 is taken by another program."""


class S3RunningElsewhereError(UserError):
    """This state directory's server already runs, but on another port than requested."""


class S3StateError(UserError):
    """The state directory lacks what the running server needs (its key files)."""


class S3StartError(TransientError):
    """The server did not come up (crashed, or did not answer within the timeout)."""


# --------------------------------------------------------------------------- the service


@dataclass
class S3Service:
    """Where one local S3 server keeps its state, and its port.

    ``port`` None means: the port of the previous start when it is free, else one the
    system picks, so that exported variables stay right across restarts when they can.
    ``cache_dir`` (the jar cache, shared by every state directory of the same user)
    defaults to ``S3PROXY.default_cache_dir()``.
    """

    home: Path
    port: int | None = None
    cache_dir: Path | None = None
    bucket: str = BUCKET
    heap: str = "256m"
    start_timeout: float = 60.0
    stop_timeout: float = 30.0

    def __post_init__(self) -> None:
        self.home = Path(self.home).expanduser().absolute()
        if self.port is not None:
            self.port = int(self.port)
            if not 1 <= self.port <= 65535:
                raise UserError(f"S3 port {self.port} is not a TCP port (1-65535)")
        if self.cache_dir is not None:
            self.cache_dir = Path(self.cache_dir).expanduser().absolute()

    @classmethod
    def for_lake(cls, lake_home: Path | str, **kwargs: Any) -> S3Service:
        """The server that belongs to a lake: state under ``<lake home>/services/s3``."""
        return cls(home=Path(lake_home) / "services" / "s3", **kwargs)

    # paths -------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def stdout_file(self) -> Path:
        return self.log_dir / "s3proxy.out"

    @property
    def config_file(self) -> Path:
        return self.home / "s3proxy.conf"

    @property
    def state_file(self) -> Path:
        return self.home / "s3proxy.json"

    @property
    def access_key_file(self) -> Path:
        return self.home / "access-key-id"

    @property
    def secret_key_file(self) -> Path:
        return self.home / "secret-access-key"

    def credentials(self) -> S3Credentials:
        """The key pair of this server (from its 0600 files)."""
        return S3Credentials(
            self.access_key_file.read_text("utf-8").strip(), self.secret_key_file.read_text("utf-8").strip()
        )


def endpoint_url(port: int) -> str:
    return f"http://{HOST}:{port}"


def storage_settings(port: int) -> StorageSettings:
    """The ``[storage]`` settings that reach a local server on ``port``."""
    return StorageSettings(endpoint_url=endpoint_url(port), allow_http=True)


# --------------------------------------------------------------------------- start / stop / status


def connection_settings(service: S3Service, state: dict[str, Any]) -> dict[str, Any]:
    """How clients reach the running server: its endpoint and bucket, and under ``env`` the
    variables to export (the credential variables name the 0600 files; no key is shown)."""
    port = int(state["port"])
    return {
        "running": True,
        "pid": int(state["pid"]),
        "endpoint": endpoint_url(port),
        "bucket": service.bucket,
        "version": state.get("version") or S3PROXY.version(),
        "started_at": state.get("started_at"),
        "home": str(service.home),
        "log": str(service.stdout_file),
        "env": {
            "SALESLAKE_STORAGE__ENDPOINT_URL": endpoint_url(port),
            "SALESLAKE_STORAGE__ALLOW_HTTP": "true",
            f"{S3_ACCESS_KEY_ENV}_FILE": str(service.access_key_file),
            f"{S3_SECRET_KEY_ENV}_FILE": str(service.secret_key_file),
        },
    }


def start_s3(service: S3Service) -> dict[str, Any]:
    """Start the server (fetching the jar and generating the key pair when needed), wait
    until it answers, create the bucket and return :func:`connection_settings`.
    Idempotent: an already running server of this state directory is reused."""
    service.home.mkdir(parents=True, exist_ok=True)
    with file_lock(service.home / ".lock"):
        state = _running_state(service)
        if state is not None:
            if service.port is not None and int(state["port"]) != service.port:
                raise S3RunningElsewhereError(
                    f"the local S3 server in {service.home} already runs on {endpoint_url(int(state['port']))}, "
                    f"not on port {service.port}: use SALESLAKE_STORAGE__ENDPOINT_URL={endpoint_url(int(state['port']))} "
                    f"or stop it first (saleslake services stop s3)"
                )
            _ensure_bucket(service, int(state["port"]))
            return connection_settings(service, state)

        java = find_java(S3PROXY)
        port = _choose_port(service)
        lib = fetch_jars(S3PROXY, service.cache_dir)
        credentials = _ensure_credentials(service)
        service.data_dir.mkdir(parents=True, exist_ok=True)
        service.log_dir.mkdir(parents=True, exist_ok=True)
        write_secret(service.config_file, _s3proxy_properties(service, port, credentials))

        log_offset = service.stdout_file.stat().st_size if service.stdout_file.exists() else 0
        jar = next(lib.glob(S3PROXY.main_jar))
        cmd = [java, *_jvm_args(service), "-cp", str(jar), MAIN_CLASS, "--properties", str(service.config_file)]
        pid = launch_detached(cmd, service.home, service.stdout_file)
        if isinstance(pid, str):
            raise S3StartError(f"could not start java for the local S3 server: {pid}")
        state = {
            "pid": pid,
            "create_time": create_time(pid),
            "port": port,
            "version": S3PROXY.version(),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        _write_state(service, state)
        try:
            deadline = time.monotonic() + service.start_timeout
            _wait_ready(service, pid, port, deadline, log_offset)
            _ensure_bucket(service, port)
        except BaseException:
            terminate(pid, timeout=min(service.stop_timeout, 15.0))
            _write_state(service, {"port": port})
            raise
    return connection_settings(service, state)


def stop_s3(service: S3Service) -> None:
    """Stop the server: SIGTERM, wait up to ``stop_timeout``, then SIGKILL. Idempotent:
    nothing running is fine. The objects, the key pair and the port stay for the next start."""

    def keep_port(state: dict[str, Any] | None) -> None:
        if state is not None:
            _write_state(service, {"port": int(state["port"])})

    stop_recorded(service.home, lambda: _running_state(service), service.stop_timeout, keep_port)


def s3_status(service: S3Service) -> dict[str, Any]:
    """Whether this state directory's server runs and how to reach it."""
    state = _running_state(service) if service.home.exists() else None
    if state is not None:
        return connection_settings(service, state)
    last_port = (_read_state(service) or {}).get("port")
    return {
        "running": False,
        "pid": None,
        "port": service.port or last_port,
        "bucket": service.bucket,
        "version": S3PROXY.version(),
        "home": str(service.home),
        "log": str(service.stdout_file),
    }


# --------------------------------------------------------------------------- internals


def _read_state(service: S3Service) -> dict[str, Any] | None:
    try:
        state = json.loads(service.state_file.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _write_state(service: S3Service, state: dict[str, Any]) -> None:
    tmp = service.state_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n", "utf-8")
    tmp.replace(service.state_file)


def _running_state(service: S3Service) -> dict[str, Any] | None:
    """The recorded state when its process is alive and really is this server, else None."""
    state = _read_state(service)
    return state if recorded_process_runs(state, MAIN_CLASS, str(service.config_file)) else None


def _choose_port(service: S3Service) -> int:
    if service.port is not None:
        holder = port_holder(service.port)
        if holder:
            raise S3PortInUseError(
                f"cannot start the local S3 server: {HOST}:{service.port} is already in use {holder}; "
                f"stop that program or choose another port (--port), or leave --port out to get a free one"
            )
        return service.port
    previous = (_read_state(service) or {}).get("port")
    if isinstance(previous, int) and 1 <= previous <= 65535 and port_holder(previous) is None:
        return previous
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _ensure_credentials(service: S3Service) -> S3Credentials:
    """The key pair from its files, generated (0600) the first time. Kept across restarts,
    so the files a shell exported stay valid."""
    with contextlib.suppress(OSError):
        existing = service.credentials()
        if existing.access_key_id and existing.secret_access_key:
            return existing
    credentials = S3Credentials("SL" + secrets.token_hex(9).upper(), secrets.token_urlsafe(30))
    write_secret(service.access_key_file, credentials.access_key_id)
    write_secret(service.secret_key_file, credentials.secret_access_key)
    return credentials


def _s3proxy_properties(service: S3Service, port: int, credentials: S3Credentials) -> str:
    props = {
        "s3proxy.endpoint": endpoint_url(port),
        # both signature versions: botocore/s3fs sign v4, some tools still v2
        "s3proxy.authorization": "aws-v2-or-v4",
        "s3proxy.identity": credentials.access_key_id,
        "s3proxy.credential": credentials.secret_access_key,
        # newer AWS SDKs send headers S3Proxy does not know (checksums); it would refuse them
        "s3proxy.ignore-unknown-headers": "true",
        "jclouds.provider": "filesystem-nio2",
        "jclouds.filesystem.basedir": str(service.data_dir),
    }
    lines = ["# Written by saleslake on every start (services start s3). Holds the credential: mode 0600."]
    lines += [f"{key}={value.replace(chr(92), chr(92) * 2)}" for key, value in props.items()]
    return "\n".join(lines)


def _jvm_args(service: S3Service) -> list[str]:
    return [
        "-Xms64m",
        f"-Xmx{service.heap}",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        "-Djava.net.preferIPv4Stack=true",
        "-DLOG_LEVEL=warn",  # S3Proxy's logback: no line per request in s3proxy.out
    ]


def _wait_ready(service: S3Service, pid: int, port: int, deadline: float, log_offset: int) -> None:
    """Until the server answers HTTP on ``port`` (any status: an unsigned request is refused)."""
    last_problem = "no answer yet"
    while True:
        if not is_running(pid):
            raise S3StartError(
                f"the local S3 server exited during start-up: "
                f"{last_error_line((service.stdout_file, log_offset)) or 'no error logged'}; see {service.stdout_file}"
            )
        try:
            urllib.request.urlopen(f"{endpoint_url(port)}/", timeout=5).close()
            return
        except urllib.error.HTTPError:
            return  # an HTTP answer (403 to an unsigned request): it is up
        except OSError as exc:
            last_problem = str(getattr(exc, "reason", exc)) or type(exc).__name__
        if time.monotonic() >= deadline:
            hint = last_error_line((service.stdout_file, log_offset))
            raise S3StartError(
                f"the local S3 server did not answer on {endpoint_url(port)} within "
                f"{service.start_timeout:.0f} s ({hint or last_problem}); see {service.stdout_file}"
            )
        time.sleep(0.2)


def _ensure_bucket(service: S3Service, port: int) -> None:
    """Create the bucket through the S3 API with the key pair (which so is checked too)."""
    from saleslake.storage import s3_filesystem

    try:
        credentials = service.credentials()
    except OSError as exc:
        raise S3StateError(
            f"the key pair of the local S3 server in {service.home} cannot be read ({exc.strerror}): "
            f"restart it to generate a new one (saleslake services stop s3, then start s3)"
        ) from None
    fs = s3_filesystem(storage_settings(port), credentials)
    try:
        try:
            fs.call_s3("head_bucket", Bucket=service.bucket)
        except FileNotFoundError:  # (s3fs's exists() says True for any bucket S3Proxy is asked about)
            with contextlib.suppress(FileExistsError):  # created meanwhile by another client
                fs.call_s3("create_bucket", Bucket=service.bucket)
    except OSError as exc:
        raise S3StartError(
            f"the local S3 server on {endpoint_url(port)} did not create bucket {service.bucket}: {exc}; "
            f"see {service.stdout_file}"
        ) from None


__all__ = [
    "BUCKET",
    "MAIN_CLASS",
    "S3PROXY",
    "S3PortInUseError",
    "S3RunningElsewhereError",
    "S3Service",
    "S3StartError",
    "S3StateError",
    "connection_settings",
    "endpoint_url",
    "s3_status",
    "start_s3",
    "stop_s3",
    "storage_settings",
]
