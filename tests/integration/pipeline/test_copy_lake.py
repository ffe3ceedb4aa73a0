"""``saleslake copy-lake`` between a folder and a real S3-compatible server (S3Proxy): the
copy holds the original's history (table versions, row counts, sums, every object's
bytes), a target holding a lake is refused, a copy killed half way is completed by a rerun,
and a bad source or target is one line that never shows the secret."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from helpers import build_gold_lake
from saleslake import api
from saleslake.crashpoints import CRASH_AT_ENV, CRASH_LOG_ENV
from saleslake.devservices.s3 import endpoint_url
from saleslake.errors import UserError
from saleslake.lake import Lake
from saleslake.pipeline.copy_lake import MARKER, NOT_THE_LAKE
from saleslake.storage import delta_storage_options, s3_filesystem

CLI = [sys.executable, "-m", "saleslake.cli"]


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake through gold (~3,000 generated lines), built once; tests only read it."""
    root = tmp_path_factory.mktemp("original")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        for name in [n for n in os.environ if n.startswith("SALESLAKE_")]:
            patch.delenv(name)
        return build_gold_lake(root)


@pytest.fixture
def bucket_uri() -> str:
    return f"s3://lakehouse/tests/copy-{uuid.uuid4().hex[:12]}"


def table_folders(home: Path) -> list[str]:
    tables = Lake(home).delta_tables().values()
    return sorted(str(t.local.relative_to(home)) for t in tables if t.local is not None and t.local.is_dir())


def fingerprint(home: str | Path, folders: list[str], storage_options: dict | None = None) -> dict:
    """Per table its version and row count; the sales of silver lines and gold facts."""
    print_ = {}
    for folder in folders:
        table = DeltaTable(f"{home}/{folder}", storage_options=storage_options)
        data = table.to_pyarrow_table()
        print_[folder] = (table.version(), data.num_rows)
        if folder in ("silver/sales_lines", "gold/fact_sales"):
            print_[f"{folder} sales"] = str(pc.sum(data["sales"]).as_py())
    return print_


def lake_files(home: Path) -> dict[str, str]:
    """SHA-256 of every file of the lake proper (what copy-lake copies)."""
    files = {}
    for path in home.rglob("*"):
        key = path.relative_to(home).as_posix()
        if (
            path.is_file()
            and key.split("/")[0] not in NOT_THE_LAKE
            and not any(p.startswith(".") for p in key.split("/"))
        ):
            files[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def cli_env(s3_service, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALESLAKE_")}
    env.update(
        SALESLAKE_STORAGE__ENDPOINT_URL=endpoint_url(s3_service.port),
        SALESLAKE_STORAGE__ALLOW_HTTP="true",
        SALESLAKE_S3_ACCESS_KEY_ID_FILE=str(s3_service.access_key_file),
        SALESLAKE_S3_SECRET_ACCESS_KEY_FILE=str(s3_service.secret_key_file),
        COLUMNS="80",
    )
    env.update(extra)
    return env


def copy_cli(source: str | Path, target: str | Path, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, "copy-lake", str(source), str(target)], capture_output=True, text=True, env=env, cwd=cwd, timeout=600
    )


def test_a_lake_copied_to_s3_and_back_keeps_its_history(original, s3_settings, bucket_uri, tmp_path):
    folders = table_folders(original)
    expected = fingerprint(original, folders)
    assert len(folders) == 12 and expected["gold/fact_sales"][1] > 2000

    up = api.copy_lake(original, bucket_uri, settings=s3_settings)
    assert fingerprint(bucket_uri, folders, delta_storage_options(s3_settings.storage)) == expected
    assert sorted(up.tables) == folders and not up.resumed
    assert {k: v for k, v in up.tables.items()} == {f: expected[f] for f in folders}
    assert "warehouse.duckdb" in up.left_out and "dbt" in up.left_out

    back = tmp_path / "back"
    down = api.copy_lake(bucket_uri, back, settings=s3_settings)
    assert fingerprint(back, folders) == expected
    assert lake_files(back) == lake_files(original)  # every object, byte for byte
    assert (down.objects, down.bytes) == (up.objects, up.bytes) == (len(lake_files(original)), down.copied_bytes)
    assert not (back / MARKER).exists() and not (back / "warehouse.duckdb").exists()
    fs = s3_filesystem(s3_settings.storage)
    assert not fs.exists(f"{bucket_uri[len('s3://') :]}/{MARKER}")

    # the copy is a working lake: the next run rebuilds the warehouse from it
    copied = api.settings(home=back, tax={"flat_rate": "0.08"})
    assert api.run(settings=copied).status == "succeeded"
    sales = api.query("SELECT count(*) AS n, sum(sales) AS s FROM gold.fact_sales", settings=copied).to_pylist()[0]
    assert (sales["n"], str(sales["s"])) == (expected["gold/fact_sales"][1], expected["gold/fact_sales sales"])


def test_a_target_that_holds_a_lake_or_anything_is_refused(original, s3_settings, bucket_uri, tmp_path):
    api.copy_lake(original, bucket_uri, settings=s3_settings)
    with pytest.raises(UserError, match="already holds a lake"):
        api.copy_lake(original, bucket_uri, settings=s3_settings)
    with pytest.raises(UserError, match="already holds a lake"):
        api.copy_lake(bucket_uri, original, settings=s3_settings)
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="already holds 1 objects"):
        api.copy_lake(bucket_uri, occupied, settings=s3_settings)
    assert [p.name for p in occupied.iterdir()] == ["notes.txt"]
    # another source's unfinished copy is not taken over
    fs = s3_filesystem(s3_settings.storage)
    fs.pipe_file(f"{bucket_uri[len('s3://') :]}-other/{MARKER}", b'{"source": "/elsewhere"}')
    with pytest.raises(UserError, match="holds an unfinished copy of /elsewhere"):
        api.copy_lake(original, f"{bucket_uri}-other", settings=s3_settings)


@pytest.mark.parametrize(
    ("point", "logs_on_target"), [("copy_lake.object_copied:40", False), ("copy_lake.log_copied:10", True)]
)
def test_a_copy_killed_half_way_is_completed_by_a_rerun(
    original, s3_service, s3_settings, bucket_uri, tmp_path, point, logs_on_target
):
    folders = table_folders(original)
    env = cli_env(s3_service)
    log = tmp_path / "passes.log"

    killed = copy_cli(original, bucket_uri, env | {CRASH_AT_ENV: point, CRASH_LOG_ENV: str(log)}, tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert log.read_text().splitlines()[-1] == point.replace(":", "\t")
    fs = s3_filesystem(s3_settings.storage)
    root = bucket_uri[len("s3://") :]
    left = [p[len(root) + 1 :] for p in fs.find(root)]
    assert MARKER in left  # the target says it is unfinished
    # data before logs: killed among the data, the target holds no table at all
    assert any("/_delta_log/" in k for k in left) is logs_on_target
    again = copy_cli(original, bucket_uri, env, tmp_path)
    assert again.returncode == 0, again.stderr
    assert "completed an interrupted copy" in again.stdout
    assert all(len(line) <= 80 for line in again.stdout.splitlines()), again.stdout
    assert fingerprint(bucket_uri, folders, delta_storage_options(s3_settings.storage)) == fingerprint(
        original, folders
    )
    assert MARKER not in [p[len(root) + 1 :] for p in fs.find(root)]


def test_bad_sources_and_targets_are_one_line_without_the_secret(original, s3_service, tmp_path):
    secret = s3_service.credentials().secret_access_key
    env = cli_env(s3_service)
    wrong_secret = cli_env(s3_service, SALESLAKE_S3_SECRET_ACCESS_KEY="not-the-secret-" + "x" * 25)
    del wrong_secret["SALESLAKE_S3_SECRET_ACCESS_KEY_FILE"]
    endpoint = endpoint_url(s3_service.port)
    cases = [
        (tmp_path / "nowhere", tmp_path / "t1", env, "does not exist"),
        ("gs://bucket/lake", tmp_path / "t2", env, "a local folder or at s3://bucket/prefix, not a gs:// URI"),
        (original, "s3://", env, "is not a bucket name"),
        (original, "s3://lakehouse/tests/wrong-secret", wrong_secret, f"{endpoint} refused the credentials"),
        ("s3://no-such-bucket/lake", tmp_path / "t3", env, f"bucket 'no-such-bucket' does not exist at {endpoint}"),
        ("s3://lakehouse/tests/nothing-here", tmp_path / "t4", env, "holds no objects"),
    ]
    for source, target, environment, message in cases:
        done = copy_cli(source, target, environment, tmp_path)
        lines = [text for text in done.stderr.splitlines() if text.strip()]
        assert done.returncode == 1 and len(lines) == 1 and message in lines[0], (source, target, done.stderr)
        assert secret not in done.stdout + done.stderr and "not-the-secret" not in done.stdout + done.stderr
