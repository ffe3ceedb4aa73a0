"""Bronze retention: processed raw data past its age goes, unprocessed data and lineage stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from helpers import HEADER, line, sql, write_csv
from saleslake import api
from saleslake.retention import apply_retention


def csv_text(*row_ids: str) -> str:
    return HEADER + "\n" + "".join(line(row_id=r) + "\n" for r in row_ids)


def bronze_files(lake) -> list:
    return sorted(p for p in (lake.home / "bronze" / "csv").rglob("*.csv"))


def test_processed_files_past_retention_are_deleted_and_stay_known(settings, lake, tmp_path):
    first = write_csv(tmp_path / "in" / "east" / "a.csv", csv_text("1", "2"))
    api.ingest_csv([first], settings=settings)
    api.run(settings=settings)
    assert len(bronze_files(lake)) == 1
    # not yet old: kept
    assert apply_retention(lake, settings).files_deleted == 0
    # landed but not processed: kept even when old
    second = write_csv(tmp_path / "in" / "east" / "b.csv", csv_text("3"))
    api.ingest_csv([second], settings=settings)
    result = apply_retention(lake, settings, now=datetime.now(UTC) + timedelta(days=91))
    assert result.files_deleted == 1 and result.bytes_freed == first.stat().st_size
    assert len(bronze_files(lake)) == 1  # b.csv waits for silver
    # silver and lineage are untouched; landing a.csv again is still a no-op
    assert sql(lake, "SELECT count(*) FROM silver.sales_lines") == [(2,)]
    again = api.ingest_csv([first], settings=settings)
    assert not again.landed and again.already_landed
    run = api.run(settings=settings)
    assert run.status == "succeeded"
    assert sql(lake, "SELECT count(*) FROM silver.sales_lines") == [(3,)]


def test_run_applies_retention(settings, lake, tmp_path):
    keep_nothing = settings.model_copy(update={"bronze": settings.bronze.model_copy(update={"retention_days": 0})})
    api.ingest_csv([write_csv(tmp_path / "in" / "east" / "a.csv", csv_text("1"))], settings=keep_nothing)
    api.run(settings=keep_nothing)
    assert bronze_files(lake) == []
    stages = api.status(settings=keep_nothing)[0]["stages"]
    assert stages["bronze_retention"]["details"]["files_deleted"] == 1
