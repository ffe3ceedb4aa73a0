"""`saleslake services start|stop|status kafka`: a real Kafka 4.x broker (KRaft) on 127.0.0.1.

Needs Java 17+ and Maven (the first run downloads the broker jars into the shared jar cache,
``~/.cache/saleslake/kafka/<version>/lib`` or ``$SALESLAKE_CACHE_DIR``). Nothing here skips:
a machine without Java or Maven fails these tests with the same one-line error a user sees.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from helpers import free_ports
from saleslake.devservices.kafka import (
    KafkaService,
    KafkaStartError,
    PortInUseError,
    fetch_jars,
    kafka_status,
    kafka_version,
    start_kafka,
    stop_kafka,
)
from saleslake.errors import TransientError, UserError


def api_versions_v0(port: int) -> tuple[int, dict[int, tuple[int, int]]]:
    """A hand-built ApiVersions v0 request: (error code, {api_key: (min, max)})."""
    client_id = b"saleslake-test"
    request = struct.pack(">hhih", 18, 0, 4242, len(client_id)) + client_id
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        data = b""
        while len(data) < 4 or len(data) < 4 + struct.unpack(">i", data[:4])[0]:
            chunk = sock.recv(65536)
            assert chunk, "the broker closed the connection"
            data += chunk
    correlation_id, error_code, count = struct.unpack(">ihi", data[4:14])
    assert correlation_id == 4242
    keys = {}
    for i in range(count):
        api_key, low, high = struct.unpack(">hhh", data[14 + 6 * i : 20 + 6 * i])
        keys[api_key] = (low, high)
    return error_code, keys


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def jars() -> Path:
    """The broker jars, downloaded once per machine (CI: once per run)."""
    return fetch_jars()


@pytest.fixture
def service(tmp_path: Path, jars: Path) -> Iterator[KafkaService]:
    port, controller_port = free_ports(2)
    svc = KafkaService(home=tmp_path / "services" / "kafka", port=port, controller_port=controller_port)
    try:
        yield svc
    finally:
        stop_kafka(svc)  # never leave a broker behind, whatever the test did


def test_start_status_stop_roundtrip(service: KafkaService, jars: Path) -> None:
    assert (jars / f"kafka_2.13-{kafka_version()}.jar").is_file()
    assert kafka_version().startswith("4.")

    # a stale pid file (this very Python process) is not mistaken for the broker
    service.home.mkdir(parents=True)
    service.pid_file.write_text(f"{os.getpid()}\n")
    assert kafka_status(service)["running"] is False

    settings = start_kafka(service)
    assert settings == {"bootstrap.servers": f"127.0.0.1:{service.port}"}

    # a real Kafka protocol answer
    error_code, keys = api_versions_v0(service.port)
    assert error_code == 0
    assert {0, 1, 3, 18} <= set(keys)  # Produce, Fetch, Metadata, ApiVersions

    status = kafka_status(service)
    assert status["running"] is True
    assert status["port"] == service.port
    assert status["bootstrap.servers"] == f"127.0.0.1:{service.port}"
    pid = status["pid"]
    process = psutil.Process(pid)
    assert "kafka.Kafka" in process.cmdline()
    # listens on loopback only
    listening = {
        c.laddr.ip.removeprefix("::ffff:")
        for c in process.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    }
    assert listening == {"127.0.0.1"}

    # starting again is idempotent: same broker, same settings
    assert start_kafka(service) == settings
    assert kafka_status(service)["pid"] == pid

    stop_kafka(service)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not port_accepts(service.port)
    assert not service.pid_file.exists()
    status = kafka_status(service)
    assert status["running"] is False and status["pid"] is None

    stop_kafka(service)  # stopping a stopped broker is fine

    # formatted storage is reused: a second start comes up on the same data
    start_kafka(service)
    assert api_versions_v0(service.port)[0] == 0
    stop_kafka(service)
    assert not port_accepts(service.port)


def test_port_in_use_is_a_clear_user_error(service: KafkaService) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", service.port))
        squatter.listen()
        with pytest.raises(PortInUseError) as caught:
            start_kafka(service)
    message = str(caught.value)
    assert isinstance(caught.value, UserError)
    assert "\n" not in message
    assert f"127.0.0.1:{service.port}" in message and "already in use" in message
    assert "--port" in message
    assert kafka_status(service)["running"] is False


def test_broker_not_answering_in_time_is_transient_and_cleaned_up(service: KafkaService) -> None:
    service.start_timeout = 0.0  # the JVM cannot answer this fast
    with pytest.raises(KafkaStartError) as caught:
        start_kafka(service)
    assert isinstance(caught.value, TransientError)
    assert str(service.log_file) in str(caught.value)
    assert "\n" not in str(caught.value)
    assert kafka_status(service)["running"] is False
    assert not service.pid_file.exists()
    assert not port_accepts(service.port)
