"""The batch pipeline end to end on a lake in a bucket (the real S3-compatible server the
project starts) beside a local lake, from the same real exports in ../shared/data: the
same silver and gold, row for row in sums and keys; a rerun lands and builds nothing; the
commands that read a lake (status, query, quarantine) work on both."""

from __future__ import annotations

import socket
import uuid

import pytest

from helpers import SHARED_DATA
from saleslake import api
from saleslake.errors import TransientError, UserError
from saleslake.lake import Lake

EXPORTS = [SHARED_DATA / "global_superstore_regional", SHARED_DATA / "superstore_us_2023"]

#: What must be equal on both lakes: per table, counts, sums and key counts.
CHECKS = {
    "silver": "SELECT source_system, count(*), count(DISTINCT line_key), sum(sales), sum(tax_amount), "
    "count(*) FILTER (WHERE is_suspected_fraud) FROM silver.sales_lines GROUP BY 1 ORDER BY 1",
    "fact": "SELECT count(*), count(DISTINCT line_key), sum(sales), sum(tax_amount), count(DISTINCT customer_sk), "
    "count(DISTINCT product_sk) FROM gold.fact_sales",
    "customers": "SELECT count(*), count(*) FILTER (WHERE is_current) FROM gold.dim_customer",
    "daily": "SELECT count(*), sum(sales), sum(lines), sum(suspected_fraud_lines) FROM gold.agg_sales_daily",
}


def rows(settings, query: str) -> list[tuple]:
    return [tuple(r.values()) for r in api.query(query, settings).to_pylist()]


def test_a_lake_in_a_bucket_holds_what_a_local_lake_holds(settings, s3_settings, tmp_path):
    storage = s3_settings.storage.model_copy(update={"work_dir": tmp_path / "work"})
    bucket = s3_settings.model_copy(update={"home": f"s3://lakehouse/e2e-{uuid.uuid4().hex[:8]}", "storage": storage})
    results = {}
    for name, lake_settings in (("local", settings), ("s3", bucket)):
        landed = api.ingest_csv(EXPORTS, settings=lake_settings)
        assert not landed.errors and len(landed.landed) == 14, (name, landed.errors)
        run = api.run(settings=lake_settings)
        assert run.status == "succeeded", (name, run)
        silver = run.stages["silver"]
        assert (silver.rows_read, silver.rows_valid, silver.rows_quarantined) == (61484, 61484, 0), name
        results[name] = {check: rows(lake_settings, query) for check, query in CHECKS.items()}
    assert results["s3"] == results["local"]
    assert results["s3"]["fact"][0][:2] == (61484, 61484)

    # the raw exports are objects in the bucket, content-addressed, one per file
    lake = Lake(bucket.home, bucket.storage)
    bronze = [k for day in lake.objects.keys("bronze/csv") for k in lake.objects.keys(day)]
    assert len(bronze) == 14 and all(k.endswith(".csv") for k in bronze)
    assert lake.location.local is None and lake.work == tmp_path / "work"  # the warehouse: a local cache

    # a rerun lands nothing and builds nothing
    again = api.ingest_csv(EXPORTS, settings=bucket)
    assert not again.landed and len(again.already_landed) == 14
    rerun = api.run(settings=bucket)
    assert rerun.status == "succeeded" and rerun.stages["silver"].rows_read == 0
    assert rows(bucket, CHECKS["fact"]) == results["local"]["fact"]

    # the ledger in the bucket: every run with its counts
    runs = api.status(settings=bucket)
    assert [r["command"] for r in runs[:4]] == ["run", "ingest csv", "run", "ingest csv"]
    assert runs[2]["stages"]["silver"]["rows_valid"] == 61484
    assert api.quarantine(settings=bucket).num_rows == 0


def test_a_bucket_lake_that_cannot_be_reached_is_one_line(s3_settings, tmp_path, monkeypatch):
    """Wrong secret, missing bucket, endpoint down: one line before any work, never the
    secret (each of these failed deep in a Delta read with the store's own words)."""
    home = {"home": f"s3://lakehouse/e2e-{uuid.uuid4().hex[:8]}"}
    wrong = tmp_path / "wrong-secret"
    wrong.write_text("not-the-secret-0123456789")
    with monkeypatch.context() as env:
        env.setenv("SALESLAKE_S3_SECRET_ACCESS_KEY_FILE", str(wrong))
        with pytest.raises(UserError) as refused:
            api.status(settings=s3_settings.model_copy(update=home))
    assert "refused the credentials" in str(refused.value) and "not-the-secret" not in str(refused.value)

    with pytest.raises(UserError, match="bucket 'no-such-bucket' does not exist"):
        api.status(settings=s3_settings.model_copy(update={"home": "s3://no-such-bucket/lake"}))

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = s3_settings.storage.model_copy(update={"endpoint_url": f"http://127.0.0.1:{port}"})
    with pytest.raises(TransientError, match="no S3 endpoint answered") as gone:
        api.run(settings=s3_settings.model_copy(update={**home, "storage": down}))
    for error in (refused.value, gone.value):
        assert "\n" not in str(error)


def test_the_stream_lands_exactly_once_in_a_bucket_lake(stream_settings, s3_settings, tmp_path):
    """Kafka -> a lake in a bucket: every line once (the lease serialises the silver
    commits, heartbeats are objects), a transaction re-sent 40 days later replaces its
    lines through the key index in the bucket, and gold builds from it."""
    from datetime import UTC, datetime, timedelta

    from stream_helpers import assert_exactly

    storage = s3_settings.storage.model_copy(update={"work_dir": tmp_path / "work"})
    bucket = stream_settings.model_copy(
        update={"home": f"s3://lakehouse/e2e-{uuid.uuid4().hex[:8]}", "storage": storage}
    )
    first_time = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    first = api.produce(1_000, seed=3, settings=bucket, start_time=first_time)
    result = api.stream(until_idle=True, settings=bucket)
    assert result.records == 1_000 and result.counts.rows_valid == first.valid_lines
    assert_exactly(bucket, first)
    again = api.produce(1_000, seed=3, settings=bucket, start_time=first_time + timedelta(days=40))
    api.stream(until_idle=True, settings=bucket)
    lines, keys, earliest = rows(
        bucket, "SELECT count(*), count(DISTINCT line_key), min(order_ts) FROM silver.sales_lines"
    )[0]
    assert lines == keys == again.valid_lines and earliest >= first_time + timedelta(days=40)
    assert api.run(settings=bucket).status == "succeeded"
    assert rows(bucket, "SELECT count(*) FROM gold.fact_sales") == [(again.valid_lines,)]
    streams = [r for r in api.status(settings=bucket) if r["command"] == "stream"]
    assert len(streams) == 2 and all(r["status"] == "succeeded" for r in streams)
    assert streams[0]["stream"]["records"] == 1_000  # its heartbeat, an object in the bucket
