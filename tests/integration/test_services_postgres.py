"""`saleslake services start|stop|status postgres`: a real PostgreSQL cluster on 127.0.0.1.

Each test starts its own cluster (a free port, a temporary state directory) so that
stopping, restarting and breaking it never disturbs the session's ``postgres_service``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
from psycopg import errors as pge
from typer.testing import CliRunner

from helpers import free_ports
from saleslake.cli import app
from saleslake.devservices import postgres as pgsvc
from saleslake.devservices.postgres import (
    PostgresInstallError,
    PostgresPortInUseError,
    PostgresRunningElsewhereError,
    PostgresService,
    PostgresStartError,
    destroy_postgres,
    find_binaries,
    install_postgresql,
    postgres_status,
    start_postgres,
    stop_postgres,
)
from saleslake.errors import TransientError, UserError

ROLES = ("owner", "reader", "warehouse")


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def connect(service: PostgresService, role: str, dbname: str | None = None) -> psycopg.Connection:
    database = dbname or (service.warehouse_database if role == "warehouse" else service.database)
    return psycopg.connect(
        host="127.0.0.1",
        port=service.port,
        dbname=database,
        user=service.role_name(role),
        password=service.password(role),
        connect_timeout=10,
        autocommit=True,
    )


@pytest.fixture
def service(tmp_path: Path) -> Iterator[PostgresService]:
    """A cluster of its own in a temporary state directory. Under root, pytest's temp
    folder is private (0700), so this also exercises the /var/lib fallback."""
    (port,) = free_ports(1)
    svc = PostgresService(home=tmp_path / "lake" / "services" / "postgres", port=port)
    try:
        yield svc
    finally:
        destroy_postgres(svc)
    assert not svc.home.exists()


@pytest.fixture
def open_service() -> Iterator[PostgresService]:
    """A cluster whose state directory the server's user can reach directly (/tmp)."""
    (port,) = free_ports(1)
    base = Path(tempfile.mkdtemp(prefix="saleslake-pg-test-"))
    base.chmod(0o755)
    svc = PostgresService(home=base / "postgres", port=port)
    try:
        yield svc
    finally:
        destroy_postgres(svc)
        shutil.rmtree(base, ignore_errors=True)


def test_roles_databases_and_privileges(open_service: PostgresService) -> None:
    svc = open_service
    settings = start_postgres(svc)

    # connection settings: DSNs without password, and the variables naming the files
    assert settings["running"] is True and settings["port"] == svc.port and settings["host"] == "127.0.0.1"
    assert settings["dsn"] == f"postgresql://saleslake@127.0.0.1:{svc.port}/shop"
    assert settings["reader_dsn"] == f"postgresql://saleslake_reader@127.0.0.1:{svc.port}/shop"
    assert settings["warehouse_dsn"] == f"postgresql://saleslake_warehouse@127.0.0.1:{svc.port}/warehouse"
    assert settings["env"] == {
        "SALESLAKE_POSTGRES__PORT": str(svc.port),
        "SALESLAKE_POSTGRES_PASSWORD_FILE": str(svc.home / "saleslake.password"),
        "SALESLAKE_POSTGRES_READER_PASSWORD_FILE": str(svc.home / "saleslake_reader.password"),
        "SALESLAKE_POSTGRES_WAREHOUSE_PASSWORD_FILE": str(svc.home / "saleslake_warehouse.password"),
    }
    passwords = {role: svc.password(role) for role in ROLES}
    assert len(set(passwords.values())) == 3 and all(len(p) >= 24 for p in passwords.values())
    for role in ROLES:
        mode = stat.S_IMODE(svc.password_file(role).stat().st_mode)
        assert mode == 0o600, f"{role} password file has mode {oct(mode)}"
    assert not any(p in repr(settings) for p in passwords.values())

    # 127.0.0.1 only, the unix socket in the state directory, data owned by the server's user
    pid = settings["pid"]
    listening = {
        c.laddr for c in psutil.net_connections(kind="inet") if c.pid == pid and c.status == psutil.CONN_LISTEN
    }
    assert listening == {("127.0.0.1", svc.port)}
    assert settings["socket_dir"] == str(svc.home / "run")
    assert (svc.home / "run" / f".s.PGSQL.{svc.port}").is_socket()
    assert svc.data_dir == svc.home / "data" and (svc.data_dir / "PG_VERSION").is_file()
    if os.geteuid() == 0:
        assert psutil.Process(pid).username() != "root"
        owner = pwd.getpwuid(svc.data_dir.stat().st_uid).pw_name
        assert owner == psutil.Process(pid).username()
        assert stat.S_IMODE(svc.data_dir.stat().st_mode) == 0o700
        assert svc.password_file("owner").stat().st_uid == 0  # the server's user cannot read them

    # the owner creates tables in shop; the reader may read them (also ones created later) but not write
    with connect(svc, "owner") as owner:
        assert owner.execute("SELECT current_database(), current_user").fetchone() == ("shop", "saleslake")
        owner.execute("CREATE TABLE t (id int PRIMARY KEY, name text)")
        owner.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
    with connect(svc, "reader") as reader:
        assert reader.execute("SELECT sum(id) FROM t").fetchone() == (3,)
        with pytest.raises((pge.InsufficientPrivilege, pge.ReadOnlySqlTransaction)):
            reader.execute("INSERT INTO t VALUES (3, 'c')")
        reader.execute("SET default_transaction_read_only = off")  # even then: privileges say no
        with pytest.raises(pge.InsufficientPrivilege):
            reader.execute("UPDATE t SET name = 'x'")
        with pytest.raises(pge.InsufficientPrivilege):
            reader.execute("CREATE TABLE mine (id int)")
        with pytest.raises(pge.InsufficientPrivilege):
            reader.execute("SELECT rolpassword FROM pg_authid")
    with connect(svc, "owner") as owner:
        owner.execute("CREATE TABLE later (id int)")
        owner.execute("INSERT INTO later VALUES (7)")
    with connect(svc, "reader") as reader:
        assert reader.execute("SELECT id FROM later").fetchone() == (7,)

    # the warehouse role owns the warehouse database; the reader can read what it publishes
    with connect(svc, "warehouse") as wh:
        assert wh.execute("SELECT current_database(), current_user").fetchone() == ("warehouse", "saleslake_warehouse")
        wh.execute("CREATE SCHEMA gold")
        wh.execute("CREATE TABLE gold.fact (k int)")
        wh.execute("INSERT INTO gold.fact VALUES (42)")
        with pytest.raises(pge.InsufficientPrivilege):
            wh.execute("CREATE ROLE intruder")
    with connect(svc, "reader", "warehouse") as reader:
        assert reader.execute("SELECT k FROM gold.fact").fetchone() == (42,)
    with pytest.raises(psycopg.OperationalError):  # the warehouse role has no business in shop
        connect(svc, "warehouse", "shop")

    # a wrong password is refused (SCRAM everywhere, also on the unix socket)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host="127.0.0.1", port=svc.port, dbname="shop", user="saleslake", password="wrong")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host=str(svc.home / "run"), port=svc.port, dbname="shop", user="saleslake", password="wrong")

    # passwords are never logged
    log = svc.log_file.read_text("utf-8", errors="replace")
    assert not any(p in log for p in passwords.values())


def test_status_stop_restart_are_idempotent(service: PostgresService) -> None:
    assert postgres_status(service)["running"] is False
    stop_postgres(service)  # nothing running: fine

    first = start_postgres(service)
    again = start_postgres(service)  # already running: just reported
    assert again["pid"] == first["pid"] and again["port"] == service.port
    status = postgres_status(service)
    assert status["running"] is True and status["pid"] == first["pid"] and status["port"] == service.port
    assert status["data_dir"] == str(service.data_dir)
    if os.geteuid() == 0:  # pytest's temp folder is 0700: the cluster lives under /var/lib
        assert service.data_dir.is_relative_to(pgsvc.FALLBACK_ROOT)
    passwords = {role: service.password(role) for role in ROLES}
    with connect(service, "owner") as conn:
        conn.execute("CREATE TABLE kept (v text)")
        conn.execute("INSERT INTO kept VALUES ('survives a restart')")

    stop_postgres(service)
    status = postgres_status(service)
    assert status["running"] is False and status["pid"] is None and status["port"] == service.port
    assert not port_accepts(service.port)
    assert not psutil.pid_exists(first["pid"]) or psutil.Process(first["pid"]).status() == psutil.STATUS_ZOMBIE
    stop_postgres(service)  # again: fine

    second = start_postgres(service)
    assert second["running"] and second["pid"] != first["pid"]
    assert {role: service.password(role) for role in ROLES} == passwords
    with connect(service, "reader") as conn:
        assert conn.execute("SELECT v FROM kept").fetchone() == ("survives a restart",)

    other = PostgresService(home=service.home, port=free_ports(1)[0])
    with pytest.raises(PostgresRunningElsewhereError, match=f"already runs on 127.0.0.1:{service.port}"):
        start_postgres(other)


def test_port_in_use_is_a_clear_user_error(service: PostgresService) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", service.port))
        squatter.listen(1)
        with pytest.raises(PostgresPortInUseError) as caught:
            start_postgres(service)
    message = str(caught.value)
    assert isinstance(caught.value, UserError)
    assert f"127.0.0.1:{service.port} is already in use" in message and "--port" in message
    assert "\n" not in message
    assert postgres_status(service)["running"] is False


def test_server_failing_to_start_reports_its_log_line(service: PostgresService) -> None:
    start_postgres(service)
    stop_postgres(service)
    with (service.data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write("max_connections = 'plenty'\n")
    with pytest.raises(PostgresStartError) as caught:
        start_postgres(service)
    message = str(caught.value)
    assert isinstance(caught.value, TransientError)
    assert 'invalid value for parameter "max_connections": "plenty"' in message
    assert str(service.log_file) in message and "\n" not in message
    assert postgres_status(service)["running"] is False


def test_binaries_are_detected_not_hard_coded() -> None:
    found = find_binaries()
    assert found is not None
    for program in ("initdb", "pg_ctl", "postgres"):
        assert os.access(found[program], os.X_OK)
    if found.bin_dir.is_relative_to(pgsvc.DEBIAN_LIB):
        assert found.bin_dir.parent.name == found.major  # /usr/lib/postgresql/<major>/bin
    assert found.version.split(".")[0] == found.major and int(found.major) >= 12
    assert find_binaries(wanted_major="1") is None


def test_missing_postgres_is_installed_through_apt(service: PostgresService, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bare-machine path: no server programs → install_postgresql, then start."""
    real = pgsvc.find_binaries
    calls: list[Path] = []

    def not_yet(bin_dir=None, wanted_major=None):
        return real(bin_dir, wanted_major) if calls else None

    monkeypatch.setattr(pgsvc, "find_binaries", not_yet)
    monkeypatch.setattr(pgsvc, "install_postgresql", calls.append)
    settings = start_postgres(service)
    assert calls == [service.home / "install.log"]
    assert settings["running"] is True


def test_apt_failure_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    script = fake / "apt-get"
    script.write_text(
        '#!/bin/sh\necho "Reading package lists..."\necho "E: Unable to locate package postgresql-common"\nexit 100\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    log = tmp_path / "install.log"
    if os.geteuid() != 0:
        with pytest.raises(UserError, match="needs root"):
            install_postgresql(log)
        return
    with pytest.raises(PostgresInstallError) as caught:
        install_postgresql(log)
    message = str(caught.value)
    assert "E: Unable to locate package postgresql-common" in message and str(log) in message
    assert "\n" not in message
    text = log.read_text()
    assert "$ apt-get install -y" in text and "$ apt-get update" in text  # retried after refreshing lists


def test_cli_prints_settings_without_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("SALESLAKE_"):
            monkeypatch.delenv(name)
    home = Path(tempfile.mkdtemp(prefix="saleslake-pg-cli-"))
    home.chmod(0o755)
    (port,) = free_ports(1)
    runner = CliRunner()
    try:
        started = runner.invoke(app, ["services", "start", "postgres", "--port", str(port), "--home", str(home)])
        assert started.exit_code == 0, started.output
        state = home / "services" / "postgres"
        passwords = [
            (state / f"{n}.password").read_text().strip()
            for n in ("saleslake", "saleslake_reader", "saleslake_warehouse")
        ]
        out = started.output
        assert f"dsn=postgresql://saleslake@127.0.0.1:{port}/shop" in out
        assert f"export SALESLAKE_POSTGRES_PASSWORD_FILE={state / 'saleslake.password'}" in out
        assert f"export SALESLAKE_POSTGRES__PORT={port}" in out

        status = runner.invoke(app, ["services", "status", "postgres", "--home", str(home)])
        assert status.exit_code == 0 and "running=True" in status.output

        monkeypatch.setenv("SALESLAKE_POSTGRES__PORT", str(port))
        again = runner.invoke(app, ["services", "start", "postgres", "--home", str(home)])
        assert again.exit_code == 0 and f"port={port}" in again.output

        ambiguous = runner.invoke(app, ["services", "start", "--port", "5999", "--home", str(home)])
        assert ambiguous.exit_code == 1 and "--port sets the port of one service" in ambiguous.output

        stopped = runner.invoke(app, ["services", "stop", "postgres", "--home", str(home)])
        assert stopped.exit_code == 0 and "running=False" in stopped.output
        after = runner.invoke(app, ["services", "status", "postgres", "--home", str(home)])
        assert "running=False" in after.output
        for output in (out, status.output, again.output, stopped.output, after.output):
            assert not any(p in output for p in passwords)
        assert not any(p in (state / "logs" / "postgres.log").read_text(errors="replace") for p in passwords)
    finally:
        destroy_postgres(PostgresService(home=home / "services" / "postgres", port=port))
        shutil.rmtree(home, ignore_errors=True)


def test_debian_main_cluster_is_switched_off_before_installing(tmp_path: Path) -> None:
    """Debian's package would create and start a 'main' cluster on 5432; the documented
    switch in createcluster.conf turns that off (other settings stay)."""
    conf = tmp_path / "createcluster.conf"
    conf.write_text(
        "# Default values for pg_createcluster(8)\n#create_main_cluster = true\ncreate_main_cluster = true\nssl = on\n"
    )
    pgsvc._disable_main_cluster(conf)
    pgsvc._disable_main_cluster(conf)  # idempotent
    lines = [ln for ln in conf.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines == ["ssl = on", "create_main_cluster = false"]
    missing = tmp_path / "etc" / "createcluster.conf"
    pgsvc._disable_main_cluster(missing)
    assert "create_main_cluster = false" in missing.read_text()
