"""`saleslake services start|stop|status s3`: a real S3-compatible server (S3Proxy) on 127.0.0.1.

Needs Java 17+ and Maven (the first run downloads S3Proxy's jar into the shared jar cache,
``~/.cache/saleslake/s3proxy/<version>/lib`` or ``$SALESLAKE_CACHE_DIR``). Nothing here
skips: a machine without Java or Maven fails these tests with the line a user sees.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable, write_deltalake

from helpers import free_ports
from saleslake.devservices.s3 import (
    MAIN_CLASS,
    S3PortInUseError,
    S3Service,
    S3StartError,
    endpoint_url,
    s3_status,
    start_s3,
    stop_s3,
)
from saleslake.errors import TransientError, UserError
from saleslake.storage import delta_storage_options, s3_filesystem

BIN = Path(sys.executable).parent


def s3_client(service: S3Service, port: int | None = None):
    """A plain botocore client with the service's key pair (the S3 API without saleslake)."""
    import botocore.config
    import botocore.session

    keys = service.credentials()
    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint_url(port or service.port or 0),
        region_name="us-east-1",
        aws_access_key_id=keys.access_key_id,
        aws_secret_access_key=keys.secret_access_key,
        config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def services_cli(action: str, home: Path, cwd: Path) -> subprocess.CompletedProcess:
    """`saleslake services ACTION s3 --home HOME` as a user runs it (a clean environment)."""
    return subprocess.run(
        [str(BIN / "saleslake"), "services", action, "s3", "--home", str(home)],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def servers_of(service: S3Service) -> list[psutil.Process]:
    """Live S3Proxy processes started for this state directory (by their command line)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        ours = MAIN_CLASS in cmdline and str(service.config_file) in cmdline
        if ours and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


def processes_showing(text: str) -> list[str]:
    """Command lines (any process) that contain ``text``."""
    shown = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if text in cmdline:
            shown.append(cmdline)
    return shown


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("SALESLAKE_", "AWS_"))}


def sales(first: int, count: int) -> pa.Table:
    ids = pa.array(range(first, first + count), pa.int64())
    return pa.table({"line_id": ids, "amount": pc.multiply(ids, 3), "store": pa.array(["s"] * count)})


# --------------------------------------------------------------------------- the session's server


def test_the_bucket_exists_and_start_is_idempotent(s3_service: S3Service) -> None:
    client = s3_client(s3_service)
    assert [b["Name"] for b in client.list_buckets()["Buckets"]] == ["lakehouse"]
    assert client.head_bucket(Bucket="lakehouse")["ResponseMetadata"]["HTTPStatusCode"] == 200

    status = s3_status(s3_service)
    assert status["running"] is True
    assert status["endpoint"] == f"http://127.0.0.1:{s3_service.port}"
    again = start_s3(s3_service)  # reused, not restarted
    assert again["pid"] == status["pid"] and again["env"] == status["env"]
    (server,) = servers_of(s3_service)
    listening = {c.laddr.ip for c in server.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}
    assert listening == {"127.0.0.1"}

    for path in (s3_service.config_file, s3_service.access_key_file, s3_service.secret_key_file):
        assert path.stat().st_mode & 0o777 == 0o600, path


def test_a_conditional_put_on_an_existing_key_is_refused(s3_service: S3Service) -> None:
    import botocore.exceptions

    client = s3_client(s3_service)
    key = f"tests/{uuid.uuid4().hex}/lease"
    client.put_object(Bucket="lakehouse", Key=key, Body=b"first", IfNoneMatch="*")  # new key: taken
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        client.put_object(Bucket="lakehouse", Key=key, Body=b"second", IfNoneMatch="*")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert caught.value.response["Error"]["Code"] == "PreconditionFailed"

    # the same through saleslake's s3fs filesystem (exclusive create)
    fs = s3_filesystem(_storage(s3_service), s3_service.credentials())
    with pytest.raises(OSError):
        fs.pipe_file(f"lakehouse/{key}", b"third", mode="create")
    assert client.get_object(Bucket="lakehouse", Key=key)["Body"].read() == b"first"


def _storage(service: S3Service):
    from saleslake.devservices.s3 import storage_settings

    assert service.port is not None
    return storage_settings(service.port)


def test_a_delta_table_on_the_server_reads_back_the_same_rows(s3_settings, s3_service: S3Service) -> None:
    options = delta_storage_options(s3_settings.storage)  # credentials from the _FILE variables
    uri = f"s3://lakehouse/tests/{uuid.uuid4().hex}/sales_lines"
    written = sales(0, 10_000)
    write_deltalake(uri, written, storage_options=options)

    table = DeltaTable(uri, storage_options=options)
    assert table.version() == 0
    read = table.to_pyarrow_table().sort_by("line_id")
    assert read.num_rows == 10_000
    assert pc.sum(read["amount"]).as_py() == 3 * sum(range(10_000))
    assert read.equals(written)

    fs = s3_filesystem(s3_settings.storage)
    log = [p.rsplit("/", 1)[1] for p in fs.ls(uri.removeprefix("s3://") + "/_delta_log")]
    assert "00000000000000000000.json" in log


def test_two_concurrent_appends_both_land(s3_settings) -> None:
    options = delta_storage_options(s3_settings.storage)
    uri = f"s3://lakehouse/tests/{uuid.uuid4().hex}/sales_lines"
    write_deltalake(uri, sales(0, 100), storage_options=options)  # version 0

    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def append(first: int) -> None:
        try:
            start.wait(timeout=60)
            write_deltalake(uri, sales(first, 1_000), mode="append", storage_options=options)
        except BaseException as exc:  # reported below, with the other writer's result
            errors.append(exc)

    writers = [threading.Thread(target=append, args=(first,)) for first in (1_000, 2_000)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=300)
    assert not errors, errors
    assert not any(w.is_alive() for w in writers)

    table = DeltaTable(uri, storage_options=options)
    assert table.version() == 2
    appends = sorted(h["version"] for h in table.history() if h.get("operation") == "WRITE" and h["version"] > 0)
    assert appends == [1, 2]
    rows = table.to_pyarrow_table()
    assert rows.num_rows == 2_100
    expected = [*range(100), *range(1_000, 2_000), *range(2_000, 3_000)]
    assert sorted(rows["line_id"].to_pylist()) == expected
    assert pc.sum(rows["amount"]).as_py() == 3 * sum(expected)


# --------------------------------------------------------------------------- the command line


def test_cli_start_exports_work_in_a_fresh_shell_and_stop_leaves_nothing(tmp_path: Path) -> None:
    home = tmp_path / "lake"
    service = S3Service.for_lake(home)
    saleslake = shlex.quote(str(BIN / "saleslake"))
    python = shlex.quote(str(BIN / "python"))
    list_bucket = (
        "from saleslake.config import load_settings; from saleslake.storage import s3_filesystem; "
        "fs = s3_filesystem(load_settings().storage); fs.pipe_file('lakehouse/kept/x.csv', b'a,b\\n1,2\\n'); "
        "print('BUCKETS', fs.ls(''), fs.ls('lakehouse/kept'))"
    )
    script = f"""set -euo pipefail
out=$({saleslake} services start s3 --home {shlex.quote(str(home))})
printf '%s\\n' "$out"
eval "$(printf '%s\\n' "$out" | grep '^ *export ')"
{python} -c {shlex.quote(list_bucket)}
"""
    try:
        done = subprocess.run(
            ["bash", "-c", script], cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-3000:]
        secret = service.credentials().secret_access_key
        access_key = service.credentials().access_key_id
        assert len(secret) >= 30

        (server,) = servers_of(service)
        port = int(s3_status(service)["endpoint"].rsplit(":", 1)[1])
        lines = done.stdout.splitlines()
        assert lines[0].startswith(f"# s3: running=True, pid={server.pid}, endpoint=http://127.0.0.1:{port}")
        exports = [line.strip() for line in lines if line.strip().startswith("export ")]
        assert exports == [
            f"export SALESLAKE_STORAGE__ENDPOINT_URL=http://127.0.0.1:{port}",
            "export SALESLAKE_STORAGE__ALLOW_HTTP=true",
            f"export SALESLAKE_S3_ACCESS_KEY_ID_FILE={service.access_key_file}",
            f"export SALESLAKE_S3_SECRET_ACCESS_KEY_FILE={service.secret_key_file}",
        ]
        assert "BUCKETS ['lakehouse'] ['lakehouse/kept/x.csv']" in done.stdout  # a fresh process, via the exports

        # the key pair is nowhere to be seen: output, the server's log, any command line or environment
        for key in (secret, access_key):
            assert key not in done.stdout and key not in done.stderr
            assert key not in service.stdout_file.read_text(errors="replace")
            assert processes_showing(key) == []
            assert all(key not in v for v in server.environ().values())
        assert str(service.config_file) in server.cmdline()  # the credential is read from the 0600 file

        # idempotent: a second start reuses the running server
        again = services_cli("start", home, tmp_path)
        assert again.returncode == 0, again.stderr
        assert f"pid={server.pid}," in again.stdout and secret not in again.stdout + again.stderr

        # a running server whose key file went missing: one line saying how to recover, exit 1
        hidden = service.secret_key_file.rename(tmp_path / "hidden")
        lost = services_cli("start", home, tmp_path)
        hidden.rename(service.secret_key_file)
        assert lost.returncode == 1
        (line,) = lost.stderr.strip().splitlines()
        assert "key pair of the local S3 server" in line and "saleslake services stop s3" in line

        stopped = services_cli("stop", home, tmp_path)
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout.strip() == "# s3: running=False"
        assert not psutil.pid_exists(server.pid) or server.status() == psutil.STATUS_ZOMBIE
        assert servers_of(service) == []
        assert not port_accepts(port)
        assert s3_status(service)["running"] is False

        # a restart keeps the port, the key files and the objects
        restarted = start_s3(S3Service.for_lake(home))
        assert restarted["endpoint"] == f"http://127.0.0.1:{port}"
        assert service.credentials().secret_access_key == secret
        assert s3_client(service, port).get_object(Bucket="lakehouse", Key="kept/x.csv")["Body"].read() == b"a,b\n1,2\n"
    finally:
        stop_s3(service)
    assert servers_of(service) == []


def test_a_busy_port_is_one_line_exit_1(tmp_path: Path) -> None:
    home = tmp_path / "lake"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(S3PortInUseError) as caught:
            start_s3(S3Service.for_lake(home, port=port))
        done = subprocess.run(
            [str(BIN / "saleslake"), "services", "start", "s3", "--port", str(port), "--home", str(home)],
            cwd=tmp_path,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
    message = str(caught.value)
    assert isinstance(caught.value, UserError) and "\n" not in message
    assert f"127.0.0.1:{port} is already in use" in message and "--port" in message
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"error: {message}"]
    assert servers_of(S3Service.for_lake(home)) == []


def test_missing_java_is_one_line_exit_1(tmp_path: Path) -> None:
    env = {**clean_env(), "PATH": str(BIN)}  # no java on PATH
    env.pop("JAVA_HOME", None)
    done = subprocess.run(
        [str(BIN / "saleslake"), "services", "start", "s3", "--home", str(tmp_path / "lake")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: Java 17+ is needed to run the local S3-compatible server but no java was found")


def test_a_server_that_does_not_answer_in_time_is_stopped_again(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    service = S3Service.for_lake(tmp_path / "lake", port=port, start_timeout=0.0)  # no JVM answers this fast
    try:
        with pytest.raises(S3StartError) as caught:
            start_s3(service)
        assert isinstance(caught.value, TransientError) and "\n" not in str(caught.value)
        assert str(service.stdout_file) in str(caught.value)
        assert s3_status(service)["running"] is False
        assert servers_of(service) == []
        assert not port_accepts(port)
    finally:
        stop_s3(service)
