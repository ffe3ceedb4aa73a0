"""Pipeline health (the monitor's signals) and the quality gate, on real lakes and the
real Kafka broker: freshness per source, recent quarantine rate, stream lag."""

from __future__ import annotations

import pytest

from helpers import HEADER, line, write_csv
from saleslake import api
from saleslake.errors import QualityGateError


@pytest.fixture
def silver_lake(settings, tmp_path):
    """Silver with 9 valid CSV lines and 1 quarantined (a negative quantity)."""
    rows = [line(row_id=str(i), order_id=f"O-{i}") for i in range(1, 10)]
    rows.append(line(row_id="10", order_id="O-10", quantity="-3"))
    write_csv(tmp_path / "in" / "eu.csv", "\n".join([HEADER, *rows]) + "\n")
    api.ingest_csv([tmp_path / "in"], source="eu", settings=settings)
    api.run(until="silver", settings=settings)
    return settings


def test_quarantine_rate_and_freshness(silver_lake):
    health = api.health(silver_lake)
    assert health.quarantine["rows_read"] == 10 and health.quarantine["rows_quarantined"] == 1
    assert health.quarantine["share"] == pytest.approx(0.1)
    assert health.problems == ["quarantine rate 10.0% over the last 24 h (1 of 10 rows) is above 5.0%"]
    (source,) = health.sources
    assert source["source_system"] == "csv:eu" and source["silver_lines"] == 9
    assert source["max_age_seconds"] == 26 * 3600 and not source["stale"]
    assert health.stream == {}  # this lake does not stream


def test_stale_source_and_thresholds_from_config(silver_lake):
    tuned = silver_lake.model_copy(
        update={
            "monitor": silver_lake.monitor.model_copy(
                update={"max_source_age_seconds": {"csv": 3600.0, "csv:eu": 0.0}, "max_quarantine_share": 0.2}
            )
        }
    )
    health = api.health(tuned)
    assert not health.ok
    (problem,) = health.problems  # the quarantine rate is now within its limit
    assert problem.startswith("source csv:eu is stale") and "(limit 0 s)" in problem
    assert health.sources[0]["stale"] and health.sources[0]["max_age_seconds"] == 0.0


def test_quality_gate(silver_lake):
    passed = api.quality_gate(0.5, settings=silver_lake)
    assert passed == {"share": 0.1, "rows_quarantined": 1, "rows_read": 10, "threshold": 0.5}
    with pytest.raises(QualityGateError, match=r"1 of 10 rows \(10.0%\)"):
        api.quality_gate(0.05, settings=silver_lake)
    api.run(
        settings=silver_lake.model_copy(
            update={"quality": silver_lake.quality.model_copy(update={"max_quarantine_share": 0.5})}
        )
    )
    # once gold holds that work, nothing is pending for the gate
    assert api.quality_gate(0.0, settings=silver_lake)["rows_read"] == 0


def test_stream_lag_from_broker_and_lake(stream_settings):
    summary = api.produce(500, seed=31, settings=stream_settings)
    assert summary.delivered == 500
    # a bounded run on the topic: stops at its time budget even with nothing left
    result = api.stream(max_seconds=4, max_batch=200, max_batches=1, settings=stream_settings)
    assert result.stopped_by == "max_batches" and result.records == 200
    tight = stream_settings.model_copy(
        update={"monitor": stream_settings.monitor.model_copy(update={"max_stream_lag": 10})}
    )
    health = api.health(tight)
    assert health.stream["total_lag"] == 300 and sum(health.stream["lag"].values()) == 300
    assert "stream lag on" in health.problems[-1] and "300 messages" in health.problems[-1]

    rest = api.stream(max_seconds=3, settings=stream_settings)
    assert rest.stopped_by == "max_seconds" and rest.records == 300
    assert api.health(tight).stream["total_lag"] == 0


def test_stream_lag_with_broker_down_is_a_problem_not_a_crash(stream_settings, lake):
    from helpers import free_port
    from saleslake.lake import ensure_delta
    from saleslake.sources.kafka import BRONZE_EVENTS_SCHEMA

    ensure_delta(lake.bronze_events, BRONZE_EVENTS_SCHEMA, ["ingest_date"])
    down = stream_settings.model_copy(
        update={"kafka": stream_settings.kafka.model_copy(update={"bootstrap_servers": f"127.0.0.1:{free_port()}"})}
    )
    health = api.health(down)
    assert health.stream["total_lag"] is None and health.stream["error"]
    assert health.problems[-1].startswith("stream lag unknown: no Kafka broker answered")
