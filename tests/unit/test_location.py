"""Lake homes: a folder or s3://bucket/prefix, parsed once; a bad URI is one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from saleslake import api
from saleslake.config import load_settings
from saleslake.errors import ConfigError, UserError
from saleslake.lake import Lake
from saleslake.location import parse_home


def test_a_folder_and_a_bucket_prefix(tmp_path: Path):
    local = parse_home(tmp_path / "lake")
    assert (
        local.is_local
        and local.local == tmp_path / "lake"
        and local.join("silver", "x") == str(tmp_path / "lake/silver/x")
    )
    s3 = parse_home("s3://lakehouse/teams//retail/")
    assert (s3.uri, s3.bucket, s3.prefix, s3.local) == (
        "s3://lakehouse/teams/retail",
        "lakehouse",
        "teams/retail",
        None,
    )
    assert s3.join("silver", "sales_lines") == "s3://lakehouse/teams/retail/silver/sales_lines"
    assert parse_home("s3://lakehouse").join("system", "runs") == "s3://lakehouse/system/runs"


def test_settings_keep_a_folder_as_a_path_and_a_uri_as_text():
    assert load_settings(home="lakehouse").home == Path("lakehouse")
    assert load_settings(home="s3://lakehouse/demo/").home == "s3://lakehouse/demo"


@pytest.mark.parametrize(
    ("home", "says"),
    [
        ("gs://bucket/lake", "not a gs:// URI"),
        ("s3://Bad_Bucket/lake", "is not a bucket name"),
        ("s3://lakehouse/a/../b", "must not contain"),
        ("s3://lakehouse/lake?versionId=1", "no query"),
        ("s3://AKIAEXAMPLE:s3cr3t-value@lakehouse/lake", "must not hold credentials"),
    ],
)
def test_a_bad_home_uri_is_one_config_error_line(home: str, says: str):
    with pytest.raises(ConfigError) as caught:
        load_settings(home=home)
    message = str(caught.value)
    assert says in message and "\n" not in message and "SALESLAKE_HOME" in message
    assert "s3cr3t-value" not in message and "AKIAEXAMPLE" not in message
    with pytest.raises(ConfigError):
        parse_home(home)


def test_a_local_lake_is_unchanged(tmp_path: Path):
    lake = Lake(tmp_path / "lake")
    assert lake.home == tmp_path / "lake" and lake.storage_options is None
    assert lake.sales_lines.local == tmp_path / "lake" / "silver" / "sales_lines"
    assert lake.sales_lines.uri == str(tmp_path / "lake" / "silver" / "sales_lines")
    assert Lake(tmp_path / "lake") == lake


def test_commands_that_need_local_files_refuse_a_bucket_lake_in_one_line():
    settings = load_settings(home="s3://lakehouse/demo")
    with pytest.raises(UserError) as caught:
        api.publish_postgres(settings=settings)
    assert str(caught.value) == (
        "`saleslake publish postgres` is not supported on an object-store lake (s3://lakehouse/demo) yet; use a local --home"
    )
    with pytest.raises(UserError, match="not supported on an object-store lake yet"):
        _ = Lake("s3://lakehouse/demo").lock_file


def test_scratch_is_local_on_every_lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """tmp (DuckDB's spill folder) is under the home of a local lake and, for a lake in a
    bucket, in the user's cache, one folder per lake URI."""
    assert Lake(tmp_path / "lake").tmp == tmp_path / "lake" / "tmp"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    demo, other = Lake("s3://lakehouse/demo/"), Lake("s3://lakehouse/other")
    assert demo.tmp.parent.parent == tmp_path / "cache" / "saleslake" and demo.tmp.name == "tmp"
    assert demo.tmp == Lake("s3://lakehouse/demo").tmp != other.tmp


def test_the_warehouse_and_dbt_output_live_in_the_work_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """storage.work_dir (SALESLAKE_STORAGE__WORK_DIR) places an object-store lake's local
    files; a local lake keeps them in its home whatever it says."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    default = Lake("s3://lakehouse/demo")
    assert default.warehouse == default.work / "warehouse.duckdb" and default.dbt == default.work / "dbt"
    assert default.work.parent == tmp_path / "cache" / "saleslake"

    monkeypatch.setenv("SALESLAKE_STORAGE__WORK_DIR", str(tmp_path / "work"))
    storage = load_settings().storage
    bucket = Lake("s3://lakehouse/demo", storage)
    assert bucket.work == tmp_path / "work"
    assert (bucket.warehouse, bucket.dbt, bucket.tmp) == (
        tmp_path / "work" / "warehouse.duckdb",
        tmp_path / "work" / "dbt",
        tmp_path / "work" / "tmp",
    )
    local = Lake(tmp_path / "lake", storage)
    assert (local.work, local.warehouse, local.dbt) == (
        tmp_path / "lake",
        tmp_path / "lake" / "warehouse.duckdb",
        tmp_path / "lake" / "dbt",
    )


def test_the_command_line_keeps_a_bucket_home_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`--home s3://bucket/prefix` reaches the settings as the URI (a Path option folded it
    into a local folder `s3:/bucket/prefix`, which every command then created)."""
    from typer.testing import CliRunner

    from saleslake import cli

    monkeypatch.chdir(tmp_path)
    outcome = CliRunner().invoke(cli.app, ["dashboard", "--home", "s3://lakehouse/demo"])
    assert outcome.exit_code == 1, outcome.output
    assert "s3://lakehouse/demo" in outcome.output and "object-store lake" in outcome.output
    assert list(tmp_path.iterdir()) == []  # no local folder made of the URI
