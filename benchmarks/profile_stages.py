"""Where the silver stages spend their time: every SQL statement and write, summed.

    .venv/bin/python benchmarks/profile_stages.py csv --rows 2000000 [--increment 0.01]
    .venv/bin/python benchmarks/profile_stages.py stream --events 300000   # needs a broker:
        # saleslake services start kafka (or SALESLAKE_KAFKA__BOOTSTRAP_SERVERS)

csv: generates exports (cached under benchmarks/work/profile-<rows>/exports), lands them
in a fresh lake, then runs the CSV silver stage. stream: produces events to a fresh topic,
then consumes it until idle. In both, the DuckDB connection is wrapped so each statement's
time is added to a line named by its first words, and the writes are timed. Prints the
lines sorted by time; nothing is asserted (targets live in batch.py and stream.py).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from saleslake import api  # noqa: E402
from saleslake.lake import Lake  # noqa: E402
from saleslake.silver import dedup, process  # noqa: E402

SPENT: dict[str, float] = defaultdict(float)


def _label(sql: str) -> str:
    text = re.sub(r"\s+", " ", sql).strip()
    named = re.match(r"(CREATE (?:OR REPLACE )?TEMP (?:TABLE|VIEW) \w+|DROP \w+ \w+ \w+|SELECT .{0,40})", text)
    return named.group(1) if named else text[:50]


class TimedConnection:
    """Forwards to a DuckDB connection, timing execute() (sql() is lazy: timed by its caller)."""

    def __init__(self, con):
        self._con = con

    def execute(self, sql, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self._con.execute(sql, *args, **kwargs)
        finally:
            SPENT["sql: " + _label(sql)] += time.perf_counter() - started

    def __getattr__(self, name):
        return getattr(self._con, name)


def timed(name: str, fn):
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            SPENT[name] += time.perf_counter() - started

    return wrapper


def split_write(con, target, positions, dropped=None):
    # materialise the rows first, so the query and the Delta write are timed apart
    started = time.perf_counter()
    con.execute("CREATE OR REPLACE TEMP TABLE profiled_upserts AS SELECT * FROM upserts")
    SPENT["write: sales_lines, the upserts query"] += time.perf_counter() - started
    con.execute("CREATE OR REPLACE TEMP VIEW upserts AS SELECT * FROM profiled_upserts")
    write = timed("write: sales_lines, Arrow cast + Delta append/rewrite", dedup.write_upserts)
    return write(con, target, positions, dropped)


def report(what: str, total: float) -> None:
    print(f"{what} in {total:.2f} s")
    for name, seconds in sorted(SPENT.items(), key=lambda kv: -kv[1]):
        print(f"{seconds:8.2f} s  {seconds / total:6.1%}  {name}")


def profile_stream(events: int, partitions: int) -> None:
    from saleslake.pipeline import stream
    from saleslake.sources.kafka import PosConsumer

    home = HERE / "work" / "profile-stream"
    shutil.rmtree(home, ignore_errors=True)
    settings = api.settings(home=home)
    topic = f"profile.{int(time.time())}"
    settings = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"topic": topic, "partitions": partitions})}
    )
    api.produce(events, seed=7, settings=settings)

    original_connect = stream.connect
    stream.connect = lambda *a, **k: TimedConnection(original_connect(*a, **k))
    PosConsumer.poll_batch = timed("kafka: poll_batch (consume + Arrow)", PosConsumer.poll_batch)
    stream.StreamWorker._write_bronze = timed("write: bronze.pos_events", stream.StreamWorker._write_bronze)
    stream.LakePositions.read = timed("positions: read from Delta", stream.LakePositions.read)
    stream.write_deltalake = timed("write: Delta appends (bronze, quarantine)", stream.write_deltalake)
    stream.classify = timed("classify (total, its SQL below too)", dedup.classify)
    stream.write_upserts = split_write
    stream.events.prepare_batch = timed("prepare_batch (total, its SQL below too)", stream.events.prepare_batch)
    started = time.perf_counter()
    result = api.stream(until_idle=True, settings=settings)
    report(
        f"stream: {events:,} events, {result.counts.rows_valid:,} valid lines, {result.batches} batches",
        time.perf_counter() - started,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["csv", "stream"])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument(
        "--increment",
        type=float,
        default=0.0,
        help="csv: profile only the last export days holding this share of the lines",
    )
    args = parser.parse_args()
    if args.what == "stream":
        profile_stream(args.events, args.partitions)
        return
    profile_csv(args.rows, args.increment)


def profile_csv(rows: int, increment: float) -> None:
    """The CSV silver stage over all exports, or (``increment`` > 0) over the last export
    days holding that share of the lines, on top of a lake holding the rest."""
    from batch import split_increment

    work = HERE / "work" / f"profile-{rows}"
    exports = work / "exports"
    if not (exports / "generation_summary.json").exists():
        api.generate_csv(exports, rows=rows, seed=42)
    home = work / "lake"
    shutil.rmtree(home, ignore_errors=True)
    settings = api.settings(home=home)
    if increment > 0:
        base, last = split_increment(exports, increment)
        api.ingest_csv(base, settings=settings)
        process.process_csv(Lake(home), settings)  # the lake before the increment, not profiled
        api.ingest_csv(last, settings=settings)
    else:
        api.ingest_csv([p for p in sorted(exports.iterdir()) if p.is_dir()], settings=settings)

    original_connect = process.connect
    process.connect = lambda *a, **k: TimedConnection(original_connect(*a, **k))
    process._write_quarantine = timed("write: quarantine (query + Delta append)", process._write_quarantine)
    process.write_upserts = split_write
    process._check_group = timed("scan, type, validate, enrich into Arrow (a dialect group)", process._check_group)
    process.classify = timed("classify (total, its SQL below too)", dedup.classify)

    started = time.perf_counter()
    counts = process.process_csv(Lake(home), settings)
    report(f"silver: {counts.rows_read:,} rows ({counts.rows_valid:,} valid)", time.perf_counter() - started)


if __name__ == "__main__":
    main()
