"""Stream benchmark: Kafka → silver exactly once, against a naive one-message-at-a-time consumer,
and end-to-end freshness at a steady rate.

    .venv/bin/python benchmarks/stream.py [--events 300000] [--rate 1000 --seconds 60]

It starts its own broker (Kafka 4, KRaft, 127.0.0.1, state under benchmarks/work/) so the
broker shares the two cores with the consumer, as it would on a laptop. Then:

- ``throughput`` at 1 and 4 partitions: ``--events`` events produced first, then
  ``saleslake stream --until-idle`` into a fresh lake; sustained events/s counts from the
  end of the first batch (the group join and the first fetch are start-up, not flow);
- ``resent``: the 1-partition topic's events sent again 40 days later (same transaction
  ids, other event times: every line replaces its earlier version in another month,
  found through the key index) and streamed into the same lake; silver must keep one
  line per key;
- ``naive``: the same topic read by a consumer that parses each message with ``json`` and
  inserts its lines into DuckDB one message per transaction (the shape of the pandas
  scripts saleslake replaces), for ``--naive-seconds``;
- ``freshness``: events produced at ``--rate`` for ``--seconds`` while the stream runs
  with ``--refresh-gold-every``; per line, visible-in-silver time is the commit time of
  the Parquet file holding it (Delta add action) minus its event time; into gold, a poller
  counts fact lines every 0.25 s and the k-th produced line counts as visible when the
  fact holds k lines (exact when lines arrive in order, as at a steady rate).

Results go to benchmarks/results/stream.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

import duckdb  # noqa: E402
import pyarrow as pa  # noqa: E402
from confluent_kafka import Consumer  # noqa: E402
from deltalake import DeltaTable  # noqa: E402

from saleslake import api  # noqa: E402
from saleslake.devservices.kafka import KafkaService, start_kafka, stop_kafka  # noqa: E402
from saleslake.lake import Lake  # noqa: E402

WORK = HERE / "work" / "stream"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def lake_settings(name: str, servers: str, topic: str, partitions: int):
    home = WORK / name
    shutil.rmtree(home, ignore_errors=True)
    s = api.settings(home=home)
    return s.model_copy(
        update={
            "kafka": s.kafka.model_copy(
                update={
                    "bootstrap_servers": servers,
                    "topic": topic,
                    "partitions": partitions,
                    "group_id": f"bench-{topic}",
                }
            )
        }
    )


def throughput(servers: str, events: int, partitions: int) -> dict:
    topic = f"bench.tp{partitions}.{int(time.time())}"
    s = lake_settings(f"tp{partitions}", servers, topic, partitions)
    produced = api.produce(events, seed=7, settings=s)
    marks: list[tuple[float, int]] = []
    started = time.perf_counter()
    result = api.stream(until_idle=True, settings=s, on_batch=lambda r: marks.append((time.perf_counter(), r.records)))
    total = time.perf_counter() - started
    (t0, n0), (t1, n1) = marks[0], marks[-1]
    sustained = (n1 - n0) / (t1 - t0) if t1 > t0 else float("nan")
    assert result.counts.rows_valid == produced.valid_lines, "the benchmark lost or doubled lines"
    return {
        "topic": topic,
        "partitions": partitions,
        "events": events,
        "lines": produced.valid_lines,
        "batches": result.batches,
        "seconds_total": round(total, 2),
        "events_per_s_sustained": round(sustained),
        "events_per_s_overall": round(events / total),
    }


def resent(servers: str, first: dict) -> dict:
    """The first throughput run's events again, 40 days later, into the same lake."""
    s = api.settings(home=WORK / "tp1")
    s = s.model_copy(
        update={
            "kafka": s.kafka.model_copy(
                update={"bootstrap_servers": servers, "topic": first["topic"], "group_id": f"bench-{first['topic']}"}
            )
        }
    )
    later = datetime.now(UTC) + timedelta(days=40)
    produced = api.produce(first["events"], seed=7, settings=s, start_time=later)
    marks: list[tuple[float, int]] = []
    started = time.perf_counter()
    result = api.stream(until_idle=True, settings=s, on_batch=lambda r: marks.append((time.perf_counter(), r.records)))
    total = time.perf_counter() - started
    (t0, n0), (t1, n1) = marks[0], marks[-1]
    lines = api.query(
        "SELECT count(*) AS n, count(DISTINCT line_key) AS k FROM silver.sales_lines WHERE source_system = 'pos'",
        settings=s,
    ).to_pylist()[0]
    assert lines["n"] == lines["k"] == produced.valid_lines, f"the re-send doubled lines: {lines}"
    return {
        "events": first["events"],
        "lines_replaced": result.counts.rows_corrected,
        "seconds_total": round(total, 2),
        "events_per_s_sustained": round((n1 - n0) / (t1 - t0)) if t1 > t0 else None,
        "events_per_s_overall": round(first["events"] / total),
    }


def naive(servers: str, topic: str, seconds: float) -> dict:
    """One message at a time: json.loads, then one INSERT per line, one commit per message."""
    con = duckdb.connect(str(WORK / "naive.duckdb"))
    con.execute(
        "CREATE OR REPLACE TABLE lines (transaction_id VARCHAR, line_no BIGINT, product_id VARCHAR, "
        "quantity BIGINT, unit_price DECIMAL(18,4), discount DECIMAL(9,4), event_time TIMESTAMPTZ)"
    )
    consumer = Consumer(
        {
            "bootstrap.servers": servers,
            "group.id": f"naive-{time.time()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    done, started = 0, None
    while started is None or time.perf_counter() - started < seconds:
        message = consumer.poll(1.0)
        if message is None or message.error():
            continue
        started = started or time.perf_counter()
        began = False
        try:
            event = json.loads(message.value())
            con.execute("BEGIN")
            began = True
            for line in event["lines"]:
                con.execute(
                    "INSERT INTO lines VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        event["transaction_id"],
                        line["line_no"],
                        line["product_id"],
                        line["quantity"],
                        line["unit_price"],
                        line["discount"],
                        event["event_time"],
                    ],
                )
            con.execute("COMMIT")
            consumer.commit(message, asynchronous=False)
        except Exception:  # a naive consumer skips what it cannot parse
            if began:
                con.execute("ROLLBACK")
        done += 1
    consumer.close()
    con.close()
    elapsed = time.perf_counter() - started
    return {"events": done, "seconds": round(elapsed, 2), "events_per_s": round(done / elapsed)}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def freshness(servers: str, rate: float, seconds: float, refresh_every: float) -> dict:
    topic = f"bench.fresh.{int(time.time())}"
    s = lake_settings("fresh", servers, topic, 4)
    lake = Lake(s.home)
    api.produce(1, seed=1, settings=s)  # creates the topic and the reference data
    stop = threading.Event()
    streamer = threading.Thread(
        target=lambda: api.stream(settings=s, stop=stop, refresh_gold_every=refresh_every, max_wait=0.5)
    )
    streamer.start()
    time.sleep(8)  # group join
    gold_counts: list[tuple[float, int]] = []

    def poll_gold() -> None:
        while not stop.is_set():
            try:
                n = api.query("SELECT count(*) AS n FROM gold.fact_sales WHERE source_system = 'pos'", settings=s)
                gold_counts.append((time.time(), n.column("n")[0].as_py()))
            except Exception:
                pass
            time.sleep(0.25)

    poller = threading.Thread(target=poll_gold)
    poller.start()
    produced = api.produce(int(rate * seconds), rate=rate, seed=2, error_rate=0.0, settings=s)
    time.sleep(refresh_every * 3 + 10)
    stop.set()
    streamer.join()
    poller.join()
    # silver: the commit time of each line's file minus its event time
    table = DeltaTable(str(lake.sales_lines))
    actions = pa.table(table.get_add_actions(flatten=True)).to_pydict()
    files = {str(lake.sales_lines / p): m for p, m in zip(actions["path"], actions["modification_time"])}
    con = duckdb.connect()
    rows = con.execute(
        f"SELECT filename, epoch_ms(order_ts) FROM read_parquet({list(files)!r}, filename = true) "
        "WHERE source_system = 'pos' ORDER BY order_ts"
    ).fetchall()
    silver_lag = [(_ms(files[f]) - ts) / 1000 for f, ts in rows if f in files]
    # gold: the k-th line (in event-time order) is visible once the fact holds k lines
    event_times = [ts / 1000 for _, ts in rows]
    gold_lag, k = [], 0
    for at, count in gold_counts:
        while k < min(count, len(event_times)):
            gold_lag.append(at - event_times[k])
            k += 1
    return {
        "rate": rate,
        "seconds": seconds,
        "events": produced.events,
        "lines": len(rows),
        "silver_p50_s": round(percentile(silver_lag, 50), 2),
        "silver_p95_s": round(percentile(silver_lag, 95), 2),
        "gold_refresh_every_s": refresh_every,
        "gold_p50_s": round(percentile(gold_lag, 50), 2) if gold_lag else None,
        "gold_p95_s": round(percentile(gold_lag, 95), 2) if gold_lag else None,
        "gold_lines_seen": len(gold_lag),
    }


def _ms(value) -> float:
    return value.timestamp() * 1000 if isinstance(value, datetime) else float(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--refresh-gold-every", type=float, default=10)
    parser.add_argument("--naive-seconds", type=float, default=20)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    port = free_port()
    service = KafkaService(home=WORK / "broker", port=port, controller_port=free_port())
    shutil.rmtree(service.home, ignore_errors=True)
    servers = start_kafka(service)["bootstrap.servers"]
    try:
        results = {"when": datetime.now().isoformat(timespec="seconds"), "throughput": []}
        for partitions in (1, 4):
            results["throughput"].append(throughput(servers, args.events, partitions))
            print(json.dumps(results["throughput"][-1]), flush=True)
        results["resent"] = resent(servers, results["throughput"][0])
        print(json.dumps(results["resent"]), flush=True)
        results["naive"] = naive(servers, results["throughput"][0]["topic"], args.naive_seconds)
        print(json.dumps(results["naive"]), flush=True)
        results["freshness"] = freshness(servers, args.rate, args.seconds, args.refresh_gold_every)
        print(json.dumps(results["freshness"]), flush=True)
    finally:
        stop_kafka(service)
    out = HERE / "results" / "stream.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


def table(r: dict) -> str:
    lines = ["| measure | result |", "|---|---|"]
    for t in r["throughput"]:
        lines.append(
            f"| Kafka → silver, exactly once, {t['partitions']} partition(s) | "
            f"{t['events_per_s_sustained']:,} events/s sustained ({t['events']:,} events, "
            f"{t['events_per_s_overall']:,}/s incl. start-up) |"
        )
    t = r["resent"]
    lines.append(
        f"| the same events re-sent 40 days later (every line replaced) | "
        f"{t['events_per_s_sustained']:,} events/s sustained ({t['lines_replaced']:,} lines replaced) |"
    )
    n = r["naive"]
    lines.append(
        f"| naive consumer (json + one insert per line, commit per message) | {n['events_per_s']:,} events/s |"
    )
    f = r["freshness"]
    lines.append(
        f"| freshness into silver at {f['rate']:,.0f} events/s | p50 {f['silver_p50_s']} s, p95 {f['silver_p95_s']} s |"
    )
    lines.append(
        f"| freshness into gold.fact_sales (refresh every {f['gold_refresh_every_s']:.0f} s) | "
        f"p50 {f['gold_p50_s']} s, p95 {f['gold_p95_s']} s |"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
