"""`saleslake doctor`: every failing check produced for real (closed port, unwritable path,
broken config, a missing topic) against the real PostgreSQL server and Kafka broker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import free_port, messages
from saleslake import api
from saleslake.lake import Lake, ensure_delta
from saleslake.sources.kafka import BRONZE_EVENTS_SCHEMA

CLI = [sys.executable, "-m", "saleslake.cli"]


def by_name(checks) -> dict:
    return {c.name: c for c in checks}


def _existing(path: Path) -> Path:
    while not path.is_dir():
        path = path.parent
    return path


def doctor_cli(home: Path, env: dict | None = None, *args: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SALESLAKE_")}
    environment.update(env or {}, COLUMNS="250")
    return subprocess.run(
        [*CLI, "doctor", "--skip-dbt", "--home", str(home), *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=_existing(home),
        timeout=120,
    )


@pytest.fixture
def wired(postgres_settings, stream_settings):
    """One lake's settings pointing at the session's real PostgreSQL and Kafka broker,
    with both PostgreSQL roles in use (extract and publish)."""
    return postgres_settings.model_copy(
        update={
            "kafka": stream_settings.kafka,
            "orchestration": postgres_settings.orchestration.model_copy(update={"extract_postgres": True}),
            "postgres": postgres_settings.postgres.model_copy(update={"publish_after_gold": True}),
        }
    )


def test_all_checks_pass_against_real_services(wired):
    checks = api.doctor(wired)
    found = by_name(checks)
    assert list(found) == [
        "config",
        "python",
        "packages",
        "home",
        "disk",
        "run lock",
        "dbt project",
        "postgres source",
        "postgres warehouse",
        "kafka",
        "java",
    ]
    assert all(c.ok for c in checks), [c.line() for c in checks if not c.ok]
    assert found["postgres source"].required and found["postgres warehouse"].required
    assert "answers (PostgreSQL" in found["postgres source"].detail
    assert "parses with dbt-core 1.11" in found["dbt project"].detail
    # the topic does not exist yet: a note, not a failure, while the lake has no stream
    assert "does not exist" in found["kafka"].detail and not found["kafka"].required


def test_closed_postgres_port_fails_a_required_check(wired):
    closed = free_port()
    broken = wired.model_copy(update={"postgres": wired.postgres.model_copy(update={"port": closed})})
    found = by_name(api.doctor(broken, include_dbt=False))
    for name in ("postgres source", "postgres warehouse"):
        check = found[name]
        assert not check.ok and check.required and check.state == "FAIL"
        assert f"127.0.0.1:{closed}" in check.detail and "refused" in check.detail.lower()
        assert "saleslake services start postgres" in check.hint


def test_wrong_password_fails_without_showing_it(wired, postgres_service, monkeypatch):
    wrong = "s3cret-but-wrong"
    monkeypatch.delenv("SALESLAKE_POSTGRES_READER_PASSWORD_FILE")
    monkeypatch.setenv("SALESLAKE_POSTGRES_READER_PASSWORD", wrong)
    checks = api.doctor(wired, include_dbt=False)
    source = by_name(checks)["postgres source"]
    assert source.state == "FAIL" and "password authentication failed" in source.detail
    text = "\n".join(c.line() for c in checks)
    for secret in (wrong, *(postgres_service.password(r) for r in ("owner", "reader", "warehouse"))):
        assert secret not in text


def test_stream_lake_requires_kafka_and_a_closed_port_fails(wired):
    ensure_delta(Lake(wired.home).bronze_events, BRONZE_EVENTS_SCHEMA, ["ingest_date"])  # the lake streams
    found = by_name(api.doctor(wired, include_dbt=False))
    assert found["kafka"].required and not found["kafka"].ok  # its topic is missing
    assert "does not exist" in found["kafka"].detail and "saleslake produce" in found["kafka"].hint

    closed = free_port()
    broken = wired.model_copy(
        update={"kafka": wired.kafka.model_copy(update={"bootstrap_servers": f"127.0.0.1:{closed}"})}
    )
    kafka = by_name(api.doctor(broken, include_dbt=False))["kafka"]
    assert kafka.state == "FAIL" and f"127.0.0.1:{closed}" in kafka.detail and "refused" in kafka.detail.lower()
    assert "saleslake services start kafka" in kafka.hint


def test_unwritable_home_fails_via_cli(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the lake's parent folder should be")
    proc = doctor_cli(blocker / "lake")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    home = next(line for line in messages(proc.stdout) if " home " in line)
    assert home.startswith("FAIL") and "not writable" in home and "fix:" in home
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == ["doctor: 1 required check(s) failed: home"]
    # one line per check (a long one wraps, its continuation indented)
    assert len(messages(proc.stdout)) == 10


def test_services_not_in_use_only_warn(tmp_path):
    closed = free_port()
    env = {"SALESLAKE_POSTGRES__PORT": str(closed), "SALESLAKE_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{closed}"}
    proc = doctor_cli(tmp_path / "lake", env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    states = {line.split()[1]: line.split()[0] for line in messages(proc.stdout)}
    assert states["kafka"] == "warn" and states["home"] == "ok"
    assert sum(1 for s in states.values() if s == "FAIL") == 0


def test_config_error_is_a_failed_check(tmp_path):
    proc = doctor_cli(tmp_path / "lake", {"SALESLAKE_POSTGRES__PORT": "not-a-port"}, "--json")
    assert proc.returncode == 1
    import json

    checks = json.loads(proc.stdout)
    assert checks[0]["name"] == "config" and checks[0]["state"] == "FAIL"
    assert "postgres.port" in checks[0]["detail"] and "SALESLAKE_POSTGRES__PORT" in checks[0]["detail"]


# -- the object store (a real S3-compatible server, S3Proxy) -----------------------------------


def s3_home(name: str) -> str:
    return f"s3://lakehouse/tests/doctor-{name}-{os.getpid()}"


def test_an_s3_home_checks_endpoint_credentials_bucket_and_conditional_puts(s3_settings, tmp_path):
    from saleslake.storage import s3_filesystem

    home = s3_home("good")
    found = by_name(api.doctor(s3_settings.model_copy(update={"home": home}), include_dbt=False))
    store = found["object store"]
    assert store.ok and store.required, store.line()
    assert s3_settings.storage.endpoint_url in store.detail and "refuses a conditional put" in store.detail
    # an S3 lake has no local home, disk or flock to check, and none is created
    assert not {"home", "disk", "run lock"} & set(found) and not (tmp_path / "s3:").exists()
    fs = s3_filesystem(s3_settings.storage)
    assert fs.find(f"{home[len('s3://') :]}/_saleslake/doctor") == []  # the probe is gone


def test_a_wrong_secret_is_a_required_failure_without_the_secret(s3_settings, s3_service, tmp_path):
    secret = s3_service.credentials().secret_access_key
    env = {
        "SALESLAKE_STORAGE__ENDPOINT_URL": s3_settings.storage.endpoint_url,
        "SALESLAKE_STORAGE__ALLOW_HTTP": "true",
        "SALESLAKE_S3_ACCESS_KEY_ID_FILE": str(s3_service.access_key_file),
        "SALESLAKE_S3_SECRET_ACCESS_KEY": "wrong-secret-" + "y" * 27,
    }
    env["SALESLAKE_HOME"] = s3_home("secret")
    proc = subprocess.run(
        [*CLI, "doctor", "--skip-dbt"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("SALESLAKE_")} | env | {"COLUMNS": "250"},
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = next(text for text in proc.stdout.splitlines() if " object store " in text)
    assert line.startswith("FAIL") and f"{s3_settings.storage.endpoint_url} refused the credentials" in line
    assert proc.stderr.strip().splitlines() == ["doctor: 1 required check(s) failed: object store"]
    assert secret not in proc.stdout + proc.stderr and "wrong-secret" not in proc.stdout + proc.stderr


def test_a_missing_bucket_is_a_required_failure(s3_settings):
    found = by_name(api.doctor(s3_settings.model_copy(update={"home": "s3://no-such-bucket/lake"}), include_dbt=False))
    store = found["object store"]
    assert not store.ok and store.required
    assert f"bucket 'no-such-bucket' does not exist at {s3_settings.storage.endpoint_url}" in store.detail


def test_an_endpoint_that_is_down_is_named(s3_settings):
    from saleslake.devservices.s3 import storage_settings

    closed = free_port()
    down = s3_settings.model_copy(update={"home": s3_home("down"), "storage": storage_settings(closed)})
    store = by_name(api.doctor(down, include_dbt=False))["object store"]
    assert not store.ok and store.required
    assert store.detail.startswith(f"no S3 endpoint answered at http://127.0.0.1:{closed}")
    assert "services start s3" in store.hint


def test_a_local_lake_with_an_endpoint_checks_it_as_a_warning(s3_settings):
    found = by_name(api.doctor(s3_settings, include_dbt=False))
    store = found["object store"]
    assert store.ok and not store.required and "takes the credentials" in store.detail
    assert found["home"].ok  # the folder's own checks stay
