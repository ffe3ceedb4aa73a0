"""copy-lake's decisions that need no store: which keys are the lake, which are Delta
logs of which table, which locations it accepts, and when SRC and DST overlap."""

from __future__ import annotations

from pathlib import Path

import pytest

from saleslake.config import StorageSettings
from saleslake.errors import UserError
from saleslake.pipeline.copy_lake import belongs_to_lake, copy_lake, is_log, place, table_of

STORAGE = StorageSettings(endpoint_url="http://127.0.0.1:9", allow_http=True)


@pytest.mark.parametrize(
    ("key", "copied"),
    [
        ("bronze/csv/ingest_date=2026-01-01/ab.csv", True),
        ("silver/sales_lines/_delta_log/00000000000000000000.json", True),
        ("gold/fact_sales/order_month=2021-01/part-0.parquet", True),
        ("system/runs/_delta_log/_last_checkpoint", True),
        ("warehouse.duckdb", False),
        ("warehouse.duckdb.wal", False),
        ("dbt/target/manifest.json", False),
        ("tmp/stage/x.parquet", False),
        ("logs/error.log", False),
        ("services/s3/data/lakehouse/x", False),
        ("_saleslake/lease/00000000000000000001.json", False),
        (".lock", False),
        ("bronze/csv/.ab.csv.0123.tmp", False),
    ],
)
def test_what_belongs_to_a_lake(key: str, copied: bool):
    assert belongs_to_lake(key) is copied


def test_delta_logs_and_their_table():
    assert is_log("gold/dim_date/_delta_log/00000000000000000003.json")
    assert not is_log("gold/dim_date/part-0.parquet") and not is_log("bronze/_delta_log")
    assert table_of("gold/dim_date/_delta_log/00000000000000000003.json") == "gold/dim_date"


def test_locations(tmp_path: Path):
    assert place("s3://lakehouse/prod/", STORAGE).uri == "s3://lakehouse/prod"
    assert place("s3://lakehouse", STORAGE).root == "lakehouse"
    assert place(str(tmp_path / "lake"), STORAGE).uri == str(tmp_path / "lake")
    for bad, message in [
        ("gs://bucket/lake", "not a gs:// URI"),
        ("s3://", "is not a bucket name"),
        ("s3://lakehouse/a/../b", "'.' or '..'"),
        ("", "an empty location"),
    ]:
        with pytest.raises(UserError, match=message):
            place(bad, STORAGE)


@pytest.mark.parametrize(
    ("source", "target"),
    [("{tmp}/lake", "{tmp}/lake"), ("{tmp}/lake", "{tmp}/lake/copy"), ("{tmp}/lake/inner", "{tmp}/lake")],
)
def test_overlapping_places_are_refused(tmp_path: Path, source: str, target: str, settings):
    (tmp_path / "lake" / "inner").mkdir(parents=True)
    with pytest.raises(UserError, match="overlap"):
        copy_lake(source.format(tmp=tmp_path), target.format(tmp=tmp_path), settings)
