"""The same point-of-sale events give the same silver and the same gold, fraud flags
included, whatever the batching (one batch, one event per batch with a restart half way)
or the arrival order of the partitions; and gold's flags are the simulator's ground truth.

The stream worker gets the records as Kafka would deliver them (no broker: the batching is
the test's to choose), lands them in real Delta tables, and gold is built by dbt."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from gold_helpers import reference_history_flags

from helpers import sql
from saleslake.gold.build import build_gold
from saleslake.gold.publish import GOLD_TABLES
from saleslake.gold.release import gold_release_tables
from saleslake.lake import Lake
from saleslake.pipeline.stream import StreamWorker
from saleslake.sample.pos_events import PosSimulator, register_reference
from saleslake.sources.kafka import RECORDS_SCHEMA

START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
EVENTS = 160
#: silver columns saying where and when a line was landed, not what it holds
LINEAGE = ("bronze_uri", "source_position", "landed_seq", "batch_id", "ingested_at")


@pytest.fixture(scope="module")
def simulated():
    """1,500 natural sales over the ten hours before START (the products' history), then
    160 sales from START with fraud (card-testing bursts, bulk quantities, large amounts,
    high discounts) and defects; their messages keyed by store, and the summary of the 160."""
    from saleslake.config import FraudSettings

    fraud = FraudSettings(quantity_norm_min_lines=10, quantity_norm_days=1)
    history, _ = PosSimulator(
        seed=20, error_rate=0.0, fraud_rate=0.0, fraud=fraud, start_time=START - timedelta(hours=10), sim_rate=0.05
    ).generate(1_500)
    sim = PosSimulator(seed=21, error_rate=0.05, fraud_rate=0.25, fraud=fraud, start_time=START, sim_rate=0.01)
    messages, summary = sim.generate(EVENTS)
    return fraud, history, messages, summary


def records(messages: list[tuple[bytes, bytes]], partitions: int = 1) -> dict[int, pa.Table]:
    """The messages as Kafka records, per partition (by key, as the producer places them)."""
    by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
    for key, value in messages:
        by_partition.setdefault(sum(key) % partitions, []).append((key, value))
    out = {}
    for p, items in by_partition.items():
        n = len(items)
        out[p] = pa.table(
            {
                "topic": ["pos.sales"] * n,
                "partition": pa.array([p] * n, pa.int32()),
                "offset": pa.array(range(n), pa.int64()),
                "key": [k for k, _ in items],
                "timestamp": pa.array([START] * n, pa.timestamp("ms", tz="UTC")),
                "value": [v for _, v in items],
            },
            schema=RECORDS_SCHEMA,
        )
    return out


def land(root: Path, name: str, settings, runs: list[list[pa.Table]]) -> Lake:
    """A lake of its own; each run is one stream worker (a restart between runs) that
    processes its batches in order; then gold is built."""
    lake = Lake(root / name)
    register_reference(lake, 42)
    s = settings.model_copy(update={"home": lake.home})
    for n, batches in enumerate(runs):
        worker = StreamWorker(lake, s, f"{name}-{n}")
        try:
            for batch in batches:
                worker.process(batch)
        finally:
            worker.close()
    build_gold(lake, s, run_id=name)
    return lake


def silver_content(lake: Lake) -> list[tuple]:
    return sql(lake, f"SELECT * EXCLUDE ({', '.join(LINEAGE)}) FROM silver.sales_lines ORDER BY line_key")


def gold_content(lake: Lake) -> dict[str, list[dict]]:
    """Every table of the published gold release, rows sorted."""
    out = {}
    for name, table in gold_release_tables(lake).items():
        rows = table.to_pyarrow_table().to_pylist()
        out[name] = sorted(rows, key=lambda r: repr(sorted(r.items())))
    return out


@pytest.fixture(scope="module")
def lakes(simulated, tmp_path_factory: pytest.TempPathFactory):
    from saleslake import api

    fraud, history, messages, _ = simulated
    settings = api.settings(home=tmp_path_factory.mktemp("unused")).model_copy(update={"fraud": fraud})
    root = tmp_path_factory.mktemp("stream-fraud")
    whole = records(history + messages)[0]
    past = len(history)
    singles = [whole.slice(i, 1) for i in range(past, whole.num_rows)]
    three = records(history + messages, partitions=3)
    return {
        "one batch": land(root, "one", settings, [[whole]]),
        "one event per batch, restarted": land(
            root, "singles", settings, [[whole.slice(0, past), *singles[:70]], singles[70:]]
        ),
        "partitions in reverse": land(root, "reverse", settings, [[three[p] for p in sorted(three, reverse=True)]]),
    }


def test_silver_and_gold_do_not_depend_on_batches_restarts_or_arrival_order(lakes) -> None:
    one = lakes["one batch"]
    for name, lake in lakes.items():
        assert silver_content(lake) == silver_content(one), name
        assert gold_content(lake) == gold_content(one), name
    assert set(gold_content(one)) == set(GOLD_TABLES)


def test_gold_flags_are_the_rules_applied_to_silver(lakes, simulated) -> None:
    fraud, *_ = simulated
    lake = lakes["one batch"]
    expected = reference_history_flags(DeltaTable(str(lake.sales_lines)).to_pyarrow_table().to_pylist(), fraud)
    facts = {r["line_key"]: r["fraud_reasons"] for r in gold_content(lake)["fact_sales"]}
    got = {
        k: [x for x in v.split(",") if x in ("velocity", "quantity_above_norm")]
        for k, v in facts.items()
        if "velocity" in v or "quantity_above_norm" in v
    }
    assert got == expected
    assert {r for v in expected.values() for r in v} == {"velocity", "quantity_above_norm"}


def test_gold_counts_per_rule_are_the_simulators_ground_truth(lakes, simulated) -> None:
    """(Of the 160 sales; the history has neither fraud nor defects.) Line rules: exactly
    the valid lines the simulator counts per rule. Velocity: every
    card-testing burst of z transactions (distinct simulated times, within the window, on
    a card nobody else uses) has its last z - velocity_max_transactions flagged, and
    nothing else is (no natural velocity at this rate). Quantity above the norm: only
    injected bulk lines, never a natural one."""
    fraud, _, _, summary = simulated
    facts = gold_content(lakes["one batch"])["fact_sales"]
    per_rule = Counter(reason for r in facts for reason in r["fraud_reasons"].split(",") if reason)
    for rule in ("amount_above_threshold", "high_discount_high_amount"):
        assert per_rule[rule] == summary.valid_lines_by_rule[rule] > 0, rule
    velocity_orders = {r["order_id"] for r in facts if "velocity" in r["fraud_reasons"]}
    bursts = summary.fraud_patterns["velocity"]
    assert bursts > 0
    assert len(velocity_orders) == summary.velocity_transactions - fraud.velocity_max_transactions * bursts
    assert velocity_orders <= set(summary.fraud_transaction_ids["velocity"])
    bulk = {r["order_id"] for r in facts if "quantity_above_norm" in r["fraud_reasons"]}
    assert bulk and bulk <= set(summary.fraud_transaction_ids["quantity_above_norm"])
    assert sum(r["is_suspected_fraud"] for r in facts) == sum(1 for r in facts if r["fraud_reasons"])
