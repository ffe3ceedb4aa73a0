"""Shared fixtures: a fresh lake per test, the real sample data in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import SHARED_DATA, free_ports
from saleslake import api
from saleslake.lake import Lake

os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")

TESTS = Path(__file__).resolve().parent
COST_BY_FOLDER = {"unit": "unit", "integration": "integration", "slow": "slow"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test's cost marker is its top folder (tests/unit, tests/integration, tests/slow),
    never written by hand: `-m unit` is the fast lane, `-m integration` needs real
    services, `-m slow` is large data or long runs."""
    for item in items:
        folder = Path(item.path).resolve().relative_to(TESTS).parts[0]
        if folder not in COST_BY_FOLDER:
            raise pytest.UsageError(f"{item.nodeid}: tests live under tests/unit, tests/integration or tests/slow")
        item.add_marker(COST_BY_FOLDER[folder])


@pytest.fixture
def shared_data() -> Path:
    assert SHARED_DATA.is_dir(), f"expected the real sample data at {SHARED_DATA}"
    return SHARED_DATA


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)  # no stray saleslake.toml from the developer's folder
    for name in list(os.environ):
        if name.startswith("SALESLAKE_"):
            monkeypatch.delenv(name)
    return api.settings(home=tmp_path / "lake")


@pytest.fixture
def lake(settings) -> Lake:
    return Lake(settings.home)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory):
    """One real Kafka broker (KRaft, 127.0.0.1) for the whole test session.

    Yields the KafkaService; ``service.bootstrap_servers`` is what clients connect to.
    Tests that stop or restart it must start it again before they end.
    """
    from saleslake.devservices.kafka import KafkaService, start_kafka, stop_kafka

    port, controller = free_ports(2)
    service = KafkaService(home=tmp_path_factory.mktemp("kafka-broker"), port=port, controller_port=controller)
    start_kafka(service)
    try:
        yield service
    finally:
        stop_kafka(service)


@pytest.fixture
def stream_settings(settings, kafka_broker):
    """Settings of a fresh lake pointing at the session's broker, with a topic of its own."""
    import uuid

    topic = f"pos.test.{uuid.uuid4().hex[:8]}"
    return settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(
                update={"bootstrap_servers": kafka_broker.bootstrap_servers, "topic": topic, "group_id": f"g-{topic}"}
            )
        }
    )


@pytest.fixture(scope="session")
def s3_service(tmp_path_factory: pytest.TempPathFactory):
    """One real S3-compatible server (S3Proxy, filesystem backend, 127.0.0.1, a free port)
    for the whole test session, started like ``saleslake services start s3``, with the
    bucket ``lakehouse``.

    Yields the S3Service: ``service.port``, ``service.bucket``, ``service.credentials()``,
    ``service.access_key_file`` and ``service.secret_key_file`` (0600);
    ``saleslake.devservices.s3.storage_settings(service.port)`` is the ``[storage]`` section
    that reaches it. Tests that stop it must start it again before they end.
    """
    from saleslake.devservices.s3 import S3Service, start_s3, stop_s3

    (port,) = free_ports(1)
    service = S3Service(home=tmp_path_factory.mktemp("s3-service"), port=port)
    start_s3(service)
    try:
        yield service
    finally:
        stop_s3(service)


@pytest.fixture
def s3_settings(settings, s3_service, monkeypatch: pytest.MonkeyPatch):
    """Settings whose ``[storage]`` reaches the session's S3 server, with
    ``SALESLAKE_S3_ACCESS_KEY_ID_FILE`` and ``…_SECRET_ACCESS_KEY_FILE`` set (as after
    ``eval`` of the lines ``services start s3`` prints). The lake home stays local."""
    from saleslake.devservices.s3 import storage_settings

    monkeypatch.setenv("SALESLAKE_S3_ACCESS_KEY_ID_FILE", str(s3_service.access_key_file))
    monkeypatch.setenv("SALESLAKE_S3_SECRET_ACCESS_KEY_FILE", str(s3_service.secret_key_file))
    return settings.model_copy(update={"storage": storage_settings(s3_service.port)})


@pytest.fixture(scope="session")
def postgres_service(tmp_path_factory: pytest.TempPathFactory):
    """One real PostgreSQL cluster (127.0.0.1, a free port) for the whole test session,
    started like ``saleslake services start postgres`` (installed from Debian's packages
    when absent).

    Yields the PostgresService: ``service.port``, ``service.dsn(role)`` (a DSN without
    password; role ``owner`` → database shop as saleslake, ``reader`` → shop as the
    read-only saleslake_reader, ``warehouse`` → database warehouse), ``service.password(role)``
    and ``service.password_file(role)``; ``create_database(service, name, role)`` (from
    saleslake.devservices.postgres) makes a fresh database with the same grants. Tests that
    stop it must start it again before they end. Deleted (cluster and state) at the end.
    """
    from saleslake.devservices.postgres import PostgresService, destroy_postgres, start_postgres

    (port,) = free_ports(1)
    service = PostgresService(home=tmp_path_factory.mktemp("postgres-service"), port=port)
    start_postgres(service)
    try:
        yield service
    finally:
        destroy_postgres(service)


@pytest.fixture
def postgres_settings(settings, postgres_service, monkeypatch: pytest.MonkeyPatch):
    """Settings of a fresh lake pointing at the session's PostgreSQL, with a fresh shop
    and warehouse database of its own (``settings.postgres.database`` and
    ``.warehouse_database``) and the three ``SALESLAKE_POSTGRES_..._PASSWORD_FILE``
    variables set."""
    import uuid

    from saleslake.devservices.postgres import PASSWORD_ENV, create_database

    suffix = uuid.uuid4().hex[:8]
    shop, warehouse = f"shop_{suffix}", f"warehouse_{suffix}"
    create_database(postgres_service, shop, "owner")
    create_database(postgres_service, warehouse, "warehouse")
    for role, name in PASSWORD_ENV.items():
        monkeypatch.setenv(f"{name}_FILE", str(postgres_service.password_file(role)))
    return settings.model_copy(
        update={
            "postgres": settings.postgres.model_copy(
                update={"port": postgres_service.port, "database": shop, "warehouse_database": warehouse}
            )
        }
    )
