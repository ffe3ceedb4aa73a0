"""One local PostgreSQL cluster on 127.0.0.1, installed from Debian's packages when absent.

``saleslake services start|stop|status postgres`` is built on this module:

* :func:`find_binaries` locates the server programs (``initdb``, ``pg_ctl``, ``postgres``):
  an explicit ``bin_dir``, else the version the cluster was created with, else the newest
  ``/usr/lib/postgresql/<major>/bin``, else ``pg_ctl`` on ``PATH``. When none is found,
  :func:`install_postgresql` runs ``apt-get install -y postgresql`` non-interactively (as
  root; it first turns off Debian's automatic ``main`` cluster, which would otherwise take
  port 5432).
* :func:`start_postgres` creates the cluster once (``initdb``, UTF-8, SCRAM passwords),
  writes its settings on every start (``listen_addresses = '127.0.0.1'``, the port, the
  unix socket in the state directory), starts it with ``pg_ctl``, waits until it accepts
  connections, then creates (idempotently) the roles and databases below and returns the
  connection settings. An already running cluster is just reported.
* :func:`stop_postgres` is a fast shutdown (``pg_ctl stop -m fast``); :func:`postgres_status`
  reports whether it runs, its pid and its port.

Roles and databases (names configurable through ``PostgresSettings``)::

    saleslake            superuser, owner of database shop     (generate oltp)
    saleslake_reader     read-only: SELECT on shop (and warehouse), also on tables created
                         later (default privileges), default_transaction_read_only
                                                               (ingest postgres)
    saleslake_warehouse  owner of database warehouse           (publish postgres)

Passwords are generated at the first start and kept in ``<role>.password`` files (mode
0600) in the state directory; they are never printed or logged: the start prints DSNs
without a password and the ``SALESLAKE_POSTGRES_..._PASSWORD_FILE`` variables to set.

PostgreSQL refuses to run as root. When saleslake runs as root, the server runs as the
``postgres`` OS user (created by the Debian package; when it is missing a system user
``saleslake-pg`` is created) and the directories it writes are owned by it. When that user
cannot reach the state directory (e.g. it lies under ``/root`` or pytest's private temp
folder, mode 0700), the cluster itself lives in ``/var/lib/saleslake/postgres/<name>-<hash>``
and ``postgres.json`` in the state directory says so.

State directory layout (``PostgresService.home``, e.g. ``<lake home>/services/postgres``)::

    postgres.json           cluster directory, port, version, run-as user (kept across stops)
    <role>.password         one per role, mode 0600, owned by the invoking user
    install.log             output of apt-get, when saleslake installed PostgreSQL
    data/                   the cluster (PGDATA), owned by the server's user, mode 0700
    run/                    the unix socket (.s.PGSQL.<port>)
    logs/postgres.log       server log
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import re
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import psutil

from saleslake.config import PostgresSettings, Settings
from saleslake.devservices.ports import file_lock, port_holder, write_secret
from saleslake.devservices.process import run_logged
from saleslake.errors import TransientError, UserError

HOST = "127.0.0.1"
DEFAULT_PORT = 5432
#: The role and database names of the default settings, which a service started without
#: settings (tests, tools) serves too: one place says them.
_DEFAULT_NAMES = PostgresSettings()
DEBIAN_LIB = Path("/usr/lib/postgresql")
FALLBACK_ROOT = Path("/var/lib/saleslake/postgres")
FALLBACK_USER = "saleslake-pg"
SOCKET_PATH_MAX = 107  # sun_path is 108 bytes on Linux, including the NUL
SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")

# Environment variables naming the password files, per role kind (see config.PostgresSettings).
PASSWORD_ENV = {
    "owner": "SALESLAKE_POSTGRES_PASSWORD",
    "reader": "SALESLAKE_POSTGRES_READER_PASSWORD",
    "warehouse": "SALESLAKE_POSTGRES_WAREHOUSE_PASSWORD",
}


# --------------------------------------------------------------------------- errors


class PostgresNotInstalledError(UserError):
    """The PostgreSQL server programs are missing and saleslake cannot install them here."""


class PostgresInstallError(TransientError):
    """``apt-get install postgresql`` failed (network, mirror, dpkg lock)."""


class PostgresPortInUseError(UserError):
    """The port PostgreSQL should listen on is taken on 127.0.0.1."""


class PostgresRunningElsewhereError(UserError):
    """This state directory's cluster already runs, but on another port than requested."""


class PostgresStateError(UserError):
    """The state directory cannot be used as it is (missing password file, version mismatch)."""


class PostgresStartError(TransientError):
    """The server did not come up (its log's last error line says why)."""


# --------------------------------------------------------------------------- the service


@dataclass
class PostgresService:
    """Where one local cluster keeps its state, its port, and the roles and databases it serves."""

    home: Path
    port: int = DEFAULT_PORT
    # the names a default configuration connects with (saleslake, saleslake_reader, ...)
    admin_user: str = _DEFAULT_NAMES.user
    reader_user: str = _DEFAULT_NAMES.reader_user
    warehouse_user: str = _DEFAULT_NAMES.warehouse_user
    database: str = _DEFAULT_NAMES.database
    warehouse_database: str = _DEFAULT_NAMES.warehouse_database
    bin_dir: Path | None = None
    run_as: str | None = None  # OS user of the server when saleslake runs as root
    install: bool = True  # apt-get install postgresql when the programs are missing
    start_timeout: float = 60.0
    stop_timeout: float = 60.0

    def __post_init__(self) -> None:
        self.home = Path(self.home).expanduser().absolute()
        self.port = int(self.port)
        if not 1 <= self.port <= 65535:
            raise UserError(f"PostgreSQL port {self.port} is not a TCP port (1-65535)")
        if self.bin_dir is not None:
            self.bin_dir = Path(self.bin_dir).expanduser().absolute()
        names = [self.admin_user, self.reader_user, self.warehouse_user, self.database, self.warehouse_database]
        for name in names:
            if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
                raise UserError(
                    f"PostgreSQL role or database name {name!r} is not a lower-case identifier "
                    "(letters, digits, underscore)"
                )
        if len({self.admin_user, self.reader_user, self.warehouse_user}) < 3:
            raise UserError("the PostgreSQL owner, reader and warehouse roles need three different names")
        if self.database == self.warehouse_database:
            raise UserError("the shop and warehouse PostgreSQL databases need two different names")

    @classmethod
    def for_lake(cls, lake_home: Path | str, **kwargs: Any) -> PostgresService:
        """The cluster that belongs to a lake: state under ``<lake home>/services/postgres``."""
        return cls(home=Path(lake_home) / "services" / "postgres", **kwargs)

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> PostgresService:
        """The local service described by ``settings.postgres`` (keyword arguments win)."""
        pg = settings.postgres
        options: dict[str, Any] = {
            "home": pg.service_home or Path(settings.home) / "services" / "postgres",
            "port": pg.port,
            "admin_user": pg.user,
            "reader_user": pg.reader_user,
            "warehouse_user": pg.warehouse_user,
            "database": pg.database,
            "warehouse_database": pg.warehouse_database,
            "bin_dir": pg.bin_dir,
        }
        options.update({k: v for k, v in kwargs.items() if v is not None})
        return cls(**options)

    # paths -------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.home / "postgres.json"

    @property
    def lock_file(self) -> Path:
        return self.home / ".lock"

    @property
    def fallback_dir(self) -> Path:
        """Where the cluster lives when the server's user cannot reach ``home``."""
        digest = hashlib.sha256(str(self.home).encode("utf-8")).hexdigest()[:12]
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(self.home.parts[-3:])).strip("-")[:40] or "cluster"
        return FALLBACK_ROOT / f"{slug}-{digest}"

    @property
    def cluster_dir(self) -> Path:
        """``home``, or :attr:`fallback_dir` when the cluster was (or must be) placed there."""
        state = _read_json(self.state_file)
        recorded = state.get("cluster_dir") if state else None
        if recorded:
            return Path(recorded)
        if (self.fallback_dir / "data" / "PG_VERSION").exists():
            return self.fallback_dir
        return self.home

    @property
    def data_dir(self) -> Path:
        return self.cluster_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.cluster_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.cluster_dir / "logs"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "postgres.log"

    @property
    def install_log(self) -> Path:
        return self.home / "install.log"

    def password_file(self, role: str) -> Path:
        """The password file of ``role`` (``owner``, ``reader`` or ``warehouse``)."""
        return self.home / f"{self.role_name(role)}.password"

    def password(self, role: str = "owner") -> str:
        """``role``'s password, read from its file (for tests and tools running as the
        service's owner; everything else takes it from ``SALESLAKE_POSTGRES_..._FILE``)."""
        return self.password_file(role).read_text("utf-8").strip()

    def role_name(self, role: str) -> str:
        try:
            return {"owner": self.admin_user, "reader": self.reader_user, "warehouse": self.warehouse_user}[role]
        except KeyError:
            raise ValueError(f"unknown role kind {role!r}: owner, reader or warehouse") from None

    def dsn(self, role: str = "owner") -> str:
        """A libpq URL for ``role`` without password (``owner`` and ``reader`` → shop,
        ``warehouse`` → warehouse)."""
        database = self.warehouse_database if role == "warehouse" else self.database
        return f"postgresql://{self.role_name(role)}@{HOST}:{self.port}/{database}"


# --------------------------------------------------------------------------- binaries


@dataclass(frozen=True)
class Binaries:
    bin_dir: Path
    version: str  # full version, e.g. "15.18"

    @property
    def major(self) -> str:
        return self.version.split(".")[0]

    def __getitem__(self, program: str) -> str:
        return str(self.bin_dir / program)


def _has_server(bin_dir: Path) -> bool:
    return all(os.access(bin_dir / p, os.X_OK) and (bin_dir / p).is_file() for p in SERVER_PROGRAMS)


def _server_version(bin_dir: Path) -> str:
    try:
        proc = subprocess.run(
            [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    match = re.search(r"\(PostgreSQL\)\s+(\d+(?:\.\d+)?)", proc.stdout)
    return match.group(1) if match else ""


def _candidate_bin_dirs(wanted_major: str | None) -> list[Path]:
    found: list[Path] = []
    if DEBIAN_LIB.is_dir():
        majors = sorted((p for p in DEBIAN_LIB.iterdir() if p.name.isdigit()), key=lambda p: int(p.name), reverse=True)
        found += [p / "bin" for p in majors if wanted_major in (None, p.name)]
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=30, check=False)
            if out.returncode == 0 and out.stdout.strip():
                found.append(Path(out.stdout.strip()))
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        found.append(Path(pg_ctl).resolve().parent)
    return found


def find_binaries(bin_dir: Path | None = None, wanted_major: str | None = None) -> Binaries | None:
    """The server programs to use, or None when PostgreSQL is not installed.

    ``bin_dir`` is taken as is (an error when it lacks a program); otherwise the newest
    Debian ``/usr/lib/postgresql/<major>/bin`` (only ``wanted_major`` when given, the
    version an existing cluster was created with), then ``pg_config --bindir``, then the
    folder of ``pg_ctl`` on PATH.
    """
    if bin_dir is not None:
        if not _has_server(bin_dir):
            raise PostgresNotInstalledError(
                f"{bin_dir} (postgres.bin_dir) does not hold the PostgreSQL server programs "
                f"{', '.join(SERVER_PROGRAMS)}: fix SALESLAKE_POSTGRES__BIN_DIR or unset it"
            )
        return Binaries(bin_dir, _server_version(bin_dir) or "unknown")
    for candidate in _candidate_bin_dirs(wanted_major):
        if _has_server(candidate):
            version = _server_version(candidate)
            if wanted_major is None or version.split(".")[0] == wanted_major:
                return Binaries(candidate, version or "unknown")
    return None


#: apt-get options for an unattended install: no questions, keep local configuration
#: files, and wait for another apt run's lock instead of failing at once.
APT_INSTALL_OPTIONS = (
    "-y",
    "--no-install-recommends",
    "-o",
    "DPkg::Lock::Timeout=300",
    "-o",
    "Dpkg::Options::=--force-confdef",
    "-o",
    "Dpkg::Options::=--force-confold",
)


def install_postgresql(log_file: Path) -> None:
    """``apt-get install -y postgresql`` (Debian/Ubuntu, as root), non-interactively.

    Debian's package would create and start a ``main`` cluster on port 5432; saleslake
    runs its own cluster, so ``create_main_cluster = false`` is set in
    ``/etc/postgresql-common/createcluster.conf`` first (the documented switch). When the
    install fails, the package lists are refreshed (``apt-get update``) and it is tried
    once more. Output goes to ``log_file``.
    """
    apt = _apt_get_as_root()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("a", encoding="utf-8") as log:
        status = _apt_install(apt, log, "postgresql-common")
        if status == 0:
            _disable_main_cluster()
            status = _apt_install(apt, log, "postgresql")
    if status != 0:
        reason = _last_apt_error(log_file) or f"apt-get exited with status {status}"
        raise PostgresInstallError(f"installing PostgreSQL with apt-get failed: {reason} (full output in {log_file})")


def _apt_get_as_root() -> str:
    """apt-get's path, when this process may install with it; otherwise one line saying
    how to get the server some other way."""
    apt = shutil.which("apt-get")
    if apt is None:
        raise PostgresNotInstalledError(
            "PostgreSQL is not installed and this system has no apt-get to install it: install the "
            "PostgreSQL server (initdb, pg_ctl, postgres) and set SALESLAKE_POSTGRES__BIN_DIR to its bin folder"
        )
    if os.geteuid() != 0:
        raise PostgresNotInstalledError(
            "PostgreSQL is not installed and installing it needs root: run "
            "'sudo apt-get install -y postgresql' (or 'saleslake services start postgres' as root)"
        )
    return apt


def _apt_install(apt: str, log: IO[str], package: str) -> int:
    """Install ``package``; when that fails, refresh the package lists (a fresh container
    has none, or stale ones) and try once more. Returns apt-get's exit status."""
    status = _apt_get(apt, log, "install", *APT_INSTALL_OPTIONS, package)
    if status != 0:
        _apt_get(apt, log, "update")
        status = _apt_get(apt, log, "install", *APT_INSTALL_OPTIONS, package)
    return status


def _apt_get(apt: str, log: IO[str], *args: str) -> int:
    """One apt-get run, its command line and output in ``log``; a run over 30 minutes is
    stopped and counts as failed (124, as timeout(1) says)."""
    log.write(f"$ apt-get {' '.join(args)}\n")
    log.flush()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
    try:
        return run_logged([apt, *args], log, timeout=1800, env=env).returncode
    except subprocess.TimeoutExpired:
        log.write("timed out after 30 minutes\n")
        return 124


def _disable_main_cluster(conf: Path = Path("/etc/postgresql-common/createcluster.conf")) -> None:
    try:
        text = conf.read_text("utf-8") if conf.exists() else ""
    except OSError:
        return
    if re.search(r"(?m)^\s*create_main_cluster\s*=\s*false", text):
        return
    text = re.sub(r"(?m)^\s*create_main_cluster\s*=.*$", "", text)
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(text.rstrip("\n") + "\n# saleslake runs its own cluster\ncreate_main_cluster = false\n", "utf-8")


def _last_apt_error(log_file: Path) -> str:
    try:
        lines = log_file.read_text("utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    errors = [line.strip() for line in lines if line.startswith(("E:", "Err:"))]
    return errors[-1][:300] if errors else ""


# --------------------------------------------------------------------------- OS user


@dataclass(frozen=True)
class _RunAs:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]

    def subprocess_kwargs(self) -> dict[str, Any]:
        if self.uid == os.geteuid():
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}


def _run_as(service: PostgresService) -> _RunAs:
    """The OS user the server runs as: ourselves unless we are root."""
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return _RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid, ())
    name = service.run_as
    if name is None:
        name = "postgres" if _user_exists("postgres") else FALLBACK_USER
    if not _user_exists(name):
        if name != FALLBACK_USER:
            raise PostgresStateError(f"the OS user {name!r} for the PostgreSQL server does not exist")
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        proc = subprocess.run(
            [
                useradd,
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                "--comment",
                "saleslake PostgreSQL server",
                name,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if proc.returncode != 0 and not _user_exists(name):
            raise PostgresStateError(
                f"cannot create the OS user {name!r} to run PostgreSQL (PostgreSQL refuses to run as root): "
                f"{proc.stderr.strip() or proc.returncode}"
            )
    entry = pwd.getpwnam(name)
    if entry.pw_uid == 0:
        raise PostgresStateError(f"the PostgreSQL server cannot run as {name!r}: it is root")
    groups = tuple(g for g in os.getgrouplist(name, entry.pw_gid) if g != entry.pw_gid)
    return _RunAs(name, entry.pw_uid, entry.pw_gid, groups)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _can_reach(user: _RunAs, directory: Path) -> bool:
    """Whether ``user`` may traverse into ``directory`` (kernel check, ACLs included)."""
    if not user.subprocess_kwargs():
        return os.access(directory, os.X_OK)
    test = shutil.which("test") or "/usr/bin/test"
    try:
        proc = subprocess.run(
            [test, "-x", str(directory)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            check=False,
            cwd="/",
            **user.subprocess_kwargs(),
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


# --------------------------------------------------------------------------- start / stop / status


def connection_settings(service: PostgresService, running: dict[str, Any] | None = None) -> dict[str, Any]:
    """How clients reach this cluster: DSNs without passwords and the variables naming the
    password files. Never contains a password."""
    port = int(running["port"]) if running else service.port
    shown = PostgresService(**{**_fields(service), "port": port})
    info: dict[str, Any] = {
        "running": running is not None,
        "pid": running.get("pid") if running else None,
        "host": HOST,
        "port": port,
        "version": (running or {}).get("version") or (_read_json(service.state_file) or {}).get("version"),
        "dsn": shown.dsn("owner"),
        "reader_dsn": shown.dsn("reader"),
        "warehouse_dsn": shown.dsn("warehouse"),
        "socket_dir": str(service.socket_dir) if _socket_usable(service) else None,
        "home": str(service.home),
        "log": str(service.log_file),
    }
    env = {"SALESLAKE_POSTGRES__PORT": str(port)}
    for role, name in PASSWORD_ENV.items():
        env[f"{name}_FILE"] = str(service.password_file(role))
    info["env"] = env
    return info


def start_postgres(service: PostgresService) -> dict[str, Any]:
    """Install PostgreSQL when absent, create the cluster once, start it, wait until it
    accepts connections, ensure the roles and databases, and return the connection
    settings. Idempotent: a running cluster of this state directory is reused."""
    service.home.mkdir(parents=True, exist_ok=True)
    with file_lock(service.lock_file):
        running = _running(service)
        if running is not None:
            if int(running["port"]) != service.port:
                raise PostgresRunningElsewhereError(
                    f"the local PostgreSQL in {service.home} already runs on {HOST}:{running['port']}, "
                    f"not on port {service.port}: set SALESLAKE_POSTGRES__PORT={running['port']} "
                    f"or stop it first (saleslake services stop postgres)"
                )
            _provision(service)
            return connection_settings(service, _running(service) or running)

        user = _run_as(service)
        cluster = _choose_cluster_dir(service, user)
        existing_major = _read_text(cluster / "data" / "PG_VERSION")
        binaries = find_binaries(service.bin_dir, existing_major or None)
        if binaries is None and existing_major and find_binaries(service.bin_dir) is not None:
            raise PostgresStateError(
                f"the cluster in {cluster / 'data'} was created by PostgreSQL {existing_major}, which is "
                f"not installed: install postgresql-{existing_major}, or remove {cluster} to start afresh"
            )
        if binaries is None:
            if not service.install:
                raise PostgresNotInstalledError(
                    "PostgreSQL is not installed: run 'apt-get install -y postgresql' or set "
                    "SALESLAKE_POSTGRES__BIN_DIR to the folder holding initdb, pg_ctl and postgres"
                )
            install_postgresql(service.install_log)
            binaries = find_binaries(service.bin_dir, existing_major or None)
            if binaries is None:
                raise PostgresNotInstalledError(
                    f"apt-get installed PostgreSQL but its server programs were not found under {DEBIAN_LIB}; "
                    f"see {service.install_log}"
                )
        _check_port_free(service.port)
        _record_state(service, cluster, user, binaries)  # from here on service.data_dir is in ``cluster``
        _prepare_dirs(service, cluster, user)
        passwords = _ensure_passwords(service, cluster_exists=bool(existing_major))
        if not existing_major:
            _initdb(service, binaries, user, passwords["owner"])
        _write_config(service, user)
        _pg_ctl_start(service, binaries, user)
        try:
            running = _wait_ready(service, passwords["owner"])
            _provision(service)
        except BaseException:
            with contextlib.suppress(Exception):
                _pg_ctl_stop(service, binaries, user, "immediate")
            raise
    return connection_settings(service, running)


def stop_postgres(service: PostgresService) -> None:
    """Fast shutdown (open sessions are rolled back). Idempotent: nothing running is fine."""
    if not service.home.exists():
        return
    with file_lock(service.lock_file):
        running = _running(service)
        if running is None:
            return
        user = _run_as(service)
        major = _read_text(service.data_dir / "PG_VERSION")
        binaries = find_binaries(service.bin_dir, major or None) or find_binaries(service.bin_dir)
        if binaries is not None:
            _pg_ctl_stop(service, binaries, user, "fast")
        if _running(service) is not None:  # pg_ctl missing or did not finish: signal the postmaster
            _signal_stop(int(running["pid"]), service.stop_timeout)


def postgres_status(service: PostgresService) -> dict[str, Any]:
    """Whether this state directory's cluster runs, its pid and port, and how to connect."""
    running = _running(service) if service.home.exists() else None
    info = connection_settings(service, running)
    state = _read_json(service.state_file) or {}
    info["started_at"] = running.get("started_at") if running else None
    info["data_dir"] = str(service.data_dir) if (service.data_dir / "PG_VERSION").exists() else None
    info["port"] = int(running["port"]) if running else int(state.get("port") or service.port)
    return info


def destroy_postgres(service: PostgresService) -> None:
    """Stop the cluster and delete it with its state directory (tests, or starting over)."""
    stop_postgres(service)
    cluster = service.cluster_dir
    if cluster != service.home:
        shutil.rmtree(cluster, ignore_errors=True)
    shutil.rmtree(service.home, ignore_errors=True)


# --------------------------------------------------------------------------- internals


def _fields(service: PostgresService) -> dict[str, Any]:
    return {k: getattr(service, k) for k in PostgresService.__dataclass_fields__}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _read_text(path: Path) -> str:
    try:
        return path.read_text("utf-8").strip()
    except OSError:
        return ""


def _choose_cluster_dir(service: PostgresService, user: _RunAs) -> Path:
    """``home`` when the server's user can reach it, else the fallback under /var/lib."""
    if (service.home / "data" / "PG_VERSION").exists():
        return service.home
    if (service.fallback_dir / "data" / "PG_VERSION").exists():
        return service.fallback_dir
    if not user.subprocess_kwargs() or _can_reach(user, service.home.parent):
        return service.home
    FALLBACK_ROOT.mkdir(parents=True, exist_ok=True)
    for path in (FALLBACK_ROOT.parent, FALLBACK_ROOT):
        path.chmod(0o755)
    return service.fallback_dir


def _record_state(service: PostgresService, cluster: Path, user: _RunAs, binaries: Binaries) -> None:
    state = _read_json(service.state_file) or {}
    state.update(
        {
            "cluster_dir": str(cluster),
            "port": service.port,
            "version": binaries.version,
            "bin_dir": str(binaries.bin_dir),
            "run_as": user.name,
            "created_at": state.get("created_at") or datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    tmp = service.state_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n", "utf-8")
    tmp.replace(service.state_file)


def _prepare_dirs(service: PostgresService, cluster: Path, user: _RunAs) -> None:
    """Directories the server writes belong to its user (mode 0700); the state directory
    stays the invoking user's, traversable by the server's group only (0710)."""
    for top in {service.home, cluster}:
        top.mkdir(parents=True, exist_ok=True)
        if user.subprocess_kwargs():
            os.chown(top, -1, user.gid)
            top.chmod(0o710)
    for path in (cluster / "data", cluster / "run", cluster / "logs"):
        path.mkdir(parents=True, exist_ok=True)
        if user.subprocess_kwargs():
            os.chown(path, user.uid, user.gid)
        path.chmod(0o700)
    if user.subprocess_kwargs():
        for path in (cluster / "logs").glob("*"):
            with contextlib.suppress(OSError):
                os.chown(path, user.uid, user.gid)


def _ensure_passwords(service: PostgresService, cluster_exists: bool) -> dict[str, str]:
    """Each role's password from its file, generated (mode 0600) when the file is missing.
    The owner's password cannot be re-created for an existing cluster."""
    out: dict[str, str] = {}
    for role in ("owner", "reader", "warehouse"):
        path = service.password_file(role)
        value = _read_text(path)
        if not value:
            if role == "owner" and cluster_exists:
                raise PostgresStateError(
                    f"{path} is missing, so the cluster in {service.data_dir} cannot be administered: "
                    f"restore that file, or remove {service.cluster_dir} (and its data) to start afresh"
                )
            value = secrets.token_urlsafe(24)
            write_secret(path, value)
        out[role] = value
    return out


def _run(
    cmd: list[str], user: _RunAs, cwd: Path, timeout: float, log: Path | None = None
) -> subprocess.CompletedProcess:
    """Run a server program as the server's user, in a session of its own (a Ctrl-C meant
    for saleslake does not reach the server it starts), without the caller's ``PG*``
    variables; its output goes to ``log`` when given, else is captured as text."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update({"LC_ALL": "C.UTF-8" if Path("/usr/lib/locale/C.utf8").exists() else "C", "TZ": "UTC"})
    if user.subprocess_kwargs():
        env.update({"HOME": str(cwd), "USER": user.name, "LOGNAME": user.name})
    options: dict[str, Any] = {"cwd": cwd, "env": env, "start_new_session": True, **user.subprocess_kwargs()}
    if log is not None:
        with log.open("a", encoding="utf-8") as out:
            return run_logged(cmd, out, timeout=timeout, **options)
    return subprocess.run(
        cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, check=False, **options
    )


def _initdb(service: PostgresService, binaries: Binaries, user: _RunAs, owner_password: str) -> None:
    pwfile = service.socket_dir / f".initdb-{secrets.token_hex(4)}"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(owner_password + "\n")
    if user.subprocess_kwargs():
        os.chown(pwfile, user.uid, user.gid)
    locale = "C.UTF-8" if Path("/usr/lib/locale/C.utf8").exists() else "C"
    log = service.log_dir / "initdb.log"
    cmd = [
        binaries["initdb"],
        "-D",
        str(service.data_dir),
        "-U",
        service.admin_user,
        "-E",
        "UTF8",
        f"--locale={locale}",
        "--auth=scram-sha-256",
        f"--pwfile={pwfile}",
    ]
    try:
        proc = _run(cmd, user, service.cluster_dir / "logs", timeout=600, log=log)
    except subprocess.TimeoutExpired:
        raise PostgresStartError(f"initdb took over 10 minutes; see {log}") from None
    finally:
        pwfile.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise PostgresStartError(
            f"initdb could not create the cluster in {service.data_dir}: "
            f"{_last_log_line(log) or f'status {proc.returncode}'}; see {log}"
        )
    with (service.data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write("\n# Written by saleslake on every start:\ninclude_if_exists = 'saleslake.conf'\n")


def _socket_usable(service: PostgresService) -> bool:
    return len(str(service.socket_dir / f".s.PGSQL.{service.port}.lock")) <= SOCKET_PATH_MAX


def _quote_conf(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _write_config(service: PostgresService, user: _RunAs) -> None:
    sockets = str(service.socket_dir) if _socket_usable(service) else ""
    settings = {
        "listen_addresses": _quote_conf(HOST),
        "port": str(service.port),
        "unix_socket_directories": _quote_conf(sockets),
        "unix_socket_permissions": "0700",
        "password_encryption": "'scram-sha-256'",
        "max_connections": "100",
        "shared_buffers": "'128MB'",
        "max_wal_size": "'2GB'",
        "timezone": "'UTC'",
        "log_timezone": "'UTC'",
        "logging_collector": "off",
        "log_line_prefix": "'%m [%p] %q%u@%d '",
        "log_min_messages": "warning",
        "log_connections": "off",
        "log_statement": "'none'",
        "dynamic_shared_memory_type": "posix",
    }
    lines = ["# Written by saleslake on every start (services start postgres)."]
    lines += [f"{k} = {v}" for k, v in settings.items()]
    hba = [
        "# Written by saleslake on every start: password (SCRAM) logins only, 127.0.0.1 only.",
        "local all all scram-sha-256",
        f"host all all {HOST}/32 scram-sha-256",
    ]
    for name, text in (("saleslake.conf", "\n".join(lines) + "\n"), ("pg_hba.conf", "\n".join(hba) + "\n")):
        path = service.data_dir / name
        path.write_text(text, "utf-8")
        path.chmod(0o600)
        if user.subprocess_kwargs():
            os.chown(path, user.uid, user.gid)


def _pg_ctl_start(service: PostgresService, binaries: Binaries, user: _RunAs) -> None:
    log_offset = service.log_file.stat().st_size if service.log_file.exists() else 0
    cmd = [
        binaries["pg_ctl"],
        "start",
        "-D",
        str(service.data_dir),
        "-l",
        str(service.log_file),
        "-w",
        "-t",
        str(int(service.start_timeout)),
        "-s",
    ]
    try:
        proc = _run(cmd, user, service.log_dir, timeout=service.start_timeout + 30)
    except subprocess.TimeoutExpired:
        proc = None
    if proc is not None and proc.returncode == 0:
        return
    line = _last_log_line(service.log_file, log_offset)
    if "Address already in use" in line or "could not bind" in line or "could not create any TCP" in line:
        _check_port_free(service.port)  # raises with who holds it
    why = line or (proc.stderr.strip().splitlines()[-1] if proc is not None and proc.stderr.strip() else "")
    raise PostgresStartError(
        f"PostgreSQL did not start on {HOST}:{service.port}: {why or 'no error logged'}; see {service.log_file}"
    )


def _pg_ctl_stop(service: PostgresService, binaries: Binaries, user: _RunAs, mode: str) -> None:
    cmd = [
        binaries["pg_ctl"],
        "stop",
        "-D",
        str(service.data_dir),
        "-m",
        mode,
        "-w",
        "-t",
        str(int(service.stop_timeout)),
        "-s",
    ]
    with contextlib.suppress(subprocess.TimeoutExpired):
        _run(cmd, user, service.log_dir if service.log_dir.exists() else Path("/"), timeout=service.stop_timeout + 30)


def _signal_stop(pid: int, timeout: float) -> None:
    """SIGINT (fast shutdown), then SIGQUIT (immediate) when it does not finish in time."""
    import signal

    for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 10.0)):
        try:
            process = psutil.Process(pid)
            process.send_signal(sig)
        except psutil.NoSuchProcess:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not process.is_running() or process.status() == psutil.STATUS_ZOMBIE:
                return
            time.sleep(0.1)


def _running(service: PostgresService) -> dict[str, Any] | None:
    """pid, port and start time from ``postmaster.pid`` when that postmaster is alive."""
    lines = _read_text(service.data_dir / "postmaster.pid").splitlines()
    if len(lines) < 4:
        return None
    try:
        pid, started, port = int(lines[0]), int(lines[2]), int(lines[3])
    except ValueError:
        return None
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        if process.name() not in ("postgres", "postmaster"):
            return None  # a stale postmaster.pid whose pid now belongs to another program
        cmdline = " ".join(process.cmdline())
        if cmdline and str(service.data_dir) not in cmdline:
            return None  # another cluster's postmaster reusing the pid
    except (psutil.Error, OSError):
        return None
    state = _read_json(service.state_file) or {}
    return {
        "pid": pid,
        "port": port,
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "status": lines[7].strip() if len(lines) > 7 else "",
        "version": state.get("version"),
    }


def _wait_ready(service: PostgresService, owner_password: str) -> dict[str, Any]:
    import psycopg

    deadline = time.monotonic() + service.start_timeout
    problem = "no answer yet"
    while True:
        running = _running(service)
        if running is None:
            raise PostgresStartError(
                f"PostgreSQL exited during start-up: {_last_log_line(service.log_file) or 'no error logged'}; "
                f"see {service.log_file}"
            )
        try:
            with psycopg.connect(
                host=HOST,
                port=service.port,
                user=service.admin_user,
                password=owner_password,
                dbname="postgres",
                connect_timeout=5,
                application_name="saleslake-services",
            ):
                return running
        except psycopg.Error as exc:
            problem = (
                str(exc).replace(owner_password, "***").strip().splitlines()[-1] if str(exc) else type(exc).__name__
            )
        if time.monotonic() >= deadline:
            raise PostgresStartError(
                f"PostgreSQL did not accept connections on {HOST}:{service.port} within "
                f"{service.start_timeout:.0f} s ({problem}); see {service.log_file}"
            )
        time.sleep(0.2)


def _provision(service: PostgresService) -> None:
    """Roles, databases and privileges, idempotently (every start). Passwords are sent as
    SCRAM verifiers computed client-side, so no statement ever carries one in clear."""
    import psycopg
    from psycopg import sql

    passwords = _ensure_passwords(service, cluster_exists=True)
    try:
        with psycopg.connect(dbname="postgres", **_admin_params(service, passwords["owner"])) as conn:

            def verifier(role: str) -> sql.Literal:
                raw = conn.pgconn.encrypt_password(
                    passwords[role].encode(), service.role_name(role).encode(), b"scram-sha-256"
                )
                return sql.Literal(raw.decode("ascii"))

            conn.execute(
                sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(sql.Identifier(service.admin_user), verifier("owner"))
            )
            for role in ("reader", "warehouse"):
                exists = conn.execute(
                    "SELECT 1 FROM pg_roles WHERE rolname = %s", (service.role_name(role),)
                ).fetchone()
                verb = "ALTER" if exists else "CREATE"
                conn.execute(
                    sql.SQL(verb + " ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
                        sql.Identifier(service.role_name(role)), verifier(role)
                    )
                )
            conn.execute(
                sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(
                    sql.Identifier(service.reader_user)
                )
            )
        _create_database(service, service.database, "owner", passwords["owner"])
        _create_database(service, service.warehouse_database, "warehouse", passwords["owner"])
    except psycopg.Error as exc:
        message = " ".join(str(exc).split())
        for secret in passwords.values():
            message = message.replace(secret, "***")
        raise PostgresStartError(
            f"PostgreSQL started but setting up its roles and databases failed: {message}"
        ) from None


def create_database(service: PostgresService, name: str, role: str = "owner") -> str:
    """Create database ``name`` (idempotent) owned by ``role`` (``owner`` like shop, or
    ``warehouse`` like warehouse), readable by the reader role like those two, on the
    running cluster. Returns its DSN for ``role`` (without password). For tests and for
    more than one shop per cluster."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise UserError(f"PostgreSQL database name {name!r} is not a lower-case identifier")
    if role not in ("owner", "warehouse"):
        raise UserError(f"a database is owned by the owner or the warehouse role, not {role!r}")
    passwords = _ensure_passwords(service, cluster_exists=True)
    _create_database(service, name, role, passwords["owner"])
    return f"postgresql://{service.role_name(role)}@{HOST}:{service.port}/{name}"


def _admin_params(service: PostgresService, owner_password: str) -> dict[str, Any]:
    return {
        "host": HOST,
        "port": service.port,
        "user": service.admin_user,
        "password": owner_password,
        "connect_timeout": 10,
        "application_name": "saleslake-services",
        "autocommit": True,
    }


def _create_database(service: PostgresService, name: str, role: str, owner_password: str) -> None:
    import psycopg
    from psycopg import sql

    admin = _admin_params(service, owner_password)
    owner_name = service.role_name(role)
    db, owner, reader = sql.Identifier(name), sql.Identifier(owner_name), sql.Identifier(service.reader_user)
    with psycopg.connect(dbname="postgres", **admin) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # created concurrently
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE template0").format(db, owner)
                )
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
        conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(db, owner))
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, reader))
    with psycopg.connect(dbname=name, **admin) as conn:
        conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(owner))
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(reader))
        # the application's own schemas only: never pg_catalog (pg_authid!) or other system schemas
        for (schema,) in conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspowner = (SELECT oid FROM pg_roles WHERE rolname = %s)"
            " AND nspname !~ '^pg_' AND nspname <> 'information_schema'",
            (owner_name,),
        ).fetchall():
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), reader))
            conn.execute(
                sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(sql.Identifier(schema), reader)
            )
        conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} GRANT SELECT ON TABLES TO {}").format(owner, reader))
        conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} GRANT USAGE ON SCHEMAS TO {}").format(owner, reader))


def _check_port_free(port: int) -> None:
    holder = port_holder(port)
    if holder:
        raise PostgresPortInUseError(
            f"cannot start the local PostgreSQL: {HOST}:{port} is already in use {holder}; stop that program or "
            f"choose another port (--port, or SALESLAKE_POSTGRES__PORT)"
        )


def _last_log_line(path: Path, offset: int = 0) -> str:
    """The last FATAL/PANIC/ERROR line written after ``offset`` (else the last line), as one
    line without its timestamp; a preceding line of the same process saying what exactly is
    wrong (``invalid value for parameter ...``, ``could not bind ...``) comes first."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            end = handle.tell()
            handle.seek(max(offset, end - 65536))
            lines = [ln.strip() for ln in handle.read().decode("utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    if not lines:
        return ""
    serious = [i for i, ln in enumerate(lines) if re.search(r"\b(FATAL|PANIC|ERROR)\b|^initdb: error|^pg_ctl:", ln)]
    i = serious[-1] if serious else len(lines) - 1
    prefix = re.compile(r"^\d{4}-\d\d-\d\d \S+ \S+ (\[\d+\]) \S*\s*")
    pid = prefix.match(lines[i])
    text = prefix.sub("", lines[i])
    for j in range(i - 1, max(i - 4, -1), -1):
        before = prefix.match(lines[j])
        if (
            pid
            and before
            and before.group(1) == pid.group(1)
            and re.search(r"LOG:\s+(invalid|could not|.*\berror\b)", lines[j])
        ):
            text = f"{prefix.sub('', lines[j])} ({text})"
            break
    return " ".join(text.split())[:400]


__all__ = [
    "PASSWORD_ENV",
    "Binaries",
    "PostgresInstallError",
    "PostgresNotInstalledError",
    "PostgresPortInUseError",
    "PostgresRunningElsewhereError",
    "PostgresService",
    "PostgresStartError",
    "PostgresStateError",
    "connection_settings",
    "create_database",
    "destroy_postgres",
    "find_binaries",
    "install_postgresql",
    "postgres_status",
    "start_postgres",
    "stop_postgres",
]
