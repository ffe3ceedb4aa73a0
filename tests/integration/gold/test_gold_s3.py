"""Gold on a lake in a bucket (the real S3 server of the ``s3_settings`` fixture): the
warehouse file and dbt's output live in the lake's local work dir, dbt's own DuckDB
connections read silver's objects (dbt-duckdb ``filesystems``), and the published gold
is the one the same silver gives on a local lake. The warehouse is a cache: a new work
dir against a lake that has gold builds it fully again."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from gold_helpers import assert_same_gold, published_snapshot, settings, synthetic_silver, write_silver

from saleslake.contract import SALES_LINES_SCHEMA
from saleslake.gold import publish as gold_publish
from saleslake.gold.build import build_gold, dbt_profile
from saleslake.gold.release import GOLD_TABLES, register_gold_release, releases
from saleslake.lake import Lake, read_delta, write_delta
from saleslake.pipeline.batch import gold_is_current, silver_version
from saleslake.runs import Ledger, StageRecord


def _s3_lake(s3_settings, work: Path) -> Lake:
    storage = s3_settings.storage.model_copy(update={"work_dir": work})
    return Lake(f"s3://lakehouse/gold-{uuid.uuid4().hex[:8]}", storage)


def _write_s3_silver(lake: Lake, table, mode: str = "append") -> None:
    assert table.schema == SALES_LINES_SCHEMA
    write_delta(lake.sales_lines, table, mode=mode, partition_by=["order_month"])


def _totals(lake: Lake) -> dict:
    """Counts, sums and keys of the published fact (the latest release)."""
    fact = published_snapshot(lake)["fact_sales"]
    return {
        "rows": fact.num_rows,
        "keys": len(set(fact["line_key"].to_pylist())),
        "sales": sum(fact["sales"].to_pylist()),
        "quantity": sum(fact["quantity"].to_pylist()),
    }


@pytest.fixture(scope="module")
def silver():
    return synthetic_silver(3000, seed=11)


def test_gold_on_s3_is_gold_on_a_local_lake_and_a_new_work_dir_rebuilds_it_fully(s3_settings, tmp_path: Path, silver):
    local = Lake(tmp_path / "local")
    write_silver(local, silver)
    build_gold(local, settings(), run_id="local-1")

    lake = _s3_lake(s3_settings, tmp_path / "work-a")
    _write_s3_silver(lake, silver)
    result = build_gold(lake, settings(), run_id="s3-1")

    assert result.fact_changes["mode"] == "full" and result.fact_changes["publish"] == "overwrite"
    assert result.tables["fact_sales"] == silver.num_rows
    assert_same_gold(published_snapshot(lake), published_snapshot(local), "S3 lake vs local lake")
    assert _totals(lake)["rows"] == silver.num_rows == _totals(lake)["keys"]
    con = duckdb.connect()
    assert sorted(register_gold_release(con, lake)) == sorted(GOLD_TABLES)
    assert con.sql("SELECT count(*), count(DISTINCT line_key) FROM gold.fact_sales").fetchall() == [
        (silver.num_rows, silver.num_rows)
    ]
    # the local files are in the work dir; the gold tables in the bucket
    assert lake.warehouse == tmp_path / "work-a" / "warehouse.duckdb" and lake.warehouse.is_file()
    assert (tmp_path / "work-a" / "dbt" / "target" / "manifest.json").is_file()
    assert lake.gold_table_names() == sorted(published_snapshot(lake))
    # the secret is in no file dbt or saleslake wrote, nor in the profile
    secret = s3_settings.storage.credentials().secret_access_key
    assert secret not in json.dumps(dbt_profile(lake, settings()))
    for path in (tmp_path / "work-a").rglob("*"):
        assert not path.is_file() or secret.encode() not in path.read_bytes(), path

    # a new machine: an empty work dir, the lake's gold in the bucket
    fresh = _s3_lake(s3_settings, tmp_path / "work-b")
    fresh = Lake(lake.location.uri, fresh.storage)
    assert not fresh.warehouse.exists()
    versions_before = read_delta(fresh.gold_table("fact_sales")).version()
    again = build_gold(fresh, settings(), run_id="s3-2")
    assert again.fact_changes["mode"] == "full" and again.fact_changes["silver_diff"] == "full"
    assert again.fact_changes["publish"] == "overwrite"
    assert again.tables["fact_sales"] == silver.num_rows
    assert read_delta(fresh.gold_table("fact_sales")).version() == versions_before + 1
    assert [r["run_id"] for r in releases(fresh)] == ["s3-1", "s3-2"]
    assert_same_gold(published_snapshot(fresh), published_snapshot(local), "rebuilt from a new work dir")


def test_an_incremental_build_on_s3_compares_only_the_silver_files_that_changed(s3_settings, tmp_path: Path, silver):
    """Silver rewritten between two builds (every file replaced, the old ones still in the
    bucket): the second build is incremental and diffs files, as on a local lake, and
    gives the gold a local lake gives (the fact is MERGEd into in the bucket)."""
    first, second = silver.slice(0, 2000), silver.slice(1000)
    local = Lake(tmp_path / "local")
    lake = _s3_lake(s3_settings, tmp_path / "work")
    write_silver(local, first)
    _write_s3_silver(lake, first)
    build_gold(local, settings(), run_id="local-1")
    build_gold(lake, settings(), run_id="s3-1")
    # what `run` records after a gold build; the published fact is found in the bucket
    now = datetime.now(UTC)
    done = StageRecord("gold", "succeeded", now, now, details={"silver_version": silver_version(lake)})
    Ledger(lake, "s3-1", "run").record(done)
    assert gold_is_current(lake)

    write_silver(local, second, mode="overwrite")
    _write_s3_silver(lake, second, mode="overwrite")
    on_local = build_gold(local, settings(), run_id="local-2")
    on_s3 = build_gold(lake, settings(), run_id="s3-2")

    assert on_local.fact_changes["mode"] == "incremental" and on_local.fact_changes["silver_diff"] == "files"
    assert on_s3.fact_changes["mode"] == "incremental" and on_s3.fact_changes["silver_diff"] == "files"
    assert on_s3.fact_changes["publish"] == "merge"
    assert {k: on_s3.fact_changes[k] for k in ("recomputed", "deleted")} == {
        k: on_local.fact_changes[k] for k in ("recomputed", "deleted")
    }
    assert on_s3.fact_changes["deleted"] == 1000
    assert _totals(lake) == _totals(local) and _totals(lake)["rows"] == second.num_rows
    assert_same_gold(published_snapshot(lake), published_snapshot(local), "incremental on S3 vs local")
    assert not gold_is_current(lake)  # silver moved on since the recorded build


def test_crowded_fact_months_are_compacted_in_the_bucket(s3_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The compaction a publish runs after its MERGE (months holding more than
    MAX_FILES_PER_PARTITION files) on a fact in the bucket: one OPTIMIZE, same rows."""
    monkeypatch.setattr(gold_publish, "MAX_FILES_PER_PARTITION", 2)
    lake = _s3_lake(s3_settings, tmp_path / "work")
    fact = lake.gold_table("fact_sales")
    for keys in (["a", "b"], ["c"], ["d"]):
        rows = pa.table({"line_key": keys, "order_month": ["2024-03"] * len(keys), "quantity": [1] * len(keys)})
        write_delta(fact, rows, mode="append", partition_by=["order_month"])
    write_delta(fact, pa.table({"line_key": ["e"], "order_month": ["2024-04"], "quantity": [5]}), mode="append")
    assert len(read_delta(fact).file_uris()) == 4

    gold_publish._compact(read_delta(fact), ["2024-03", "2024-04"])

    table = read_delta(fact)
    assert table.history(1)[0]["operation"] == "OPTIMIZE" and len(table.file_uris()) == 2
    assert sorted(table.to_pyarrow_table()["line_key"].to_pylist()) == ["a", "b", "c", "d", "e"]
