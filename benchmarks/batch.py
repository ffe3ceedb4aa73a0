"""Batch benchmark: CSV exports → gold, against the DuckDB floor and the pandas baseline.

    .venv/bin/python benchmarks/batch.py --rows 1000000 --rows 10000000

For each size it generates the exports once (cached under benchmarks/work/), then times,
each in its own process with its peak RSS (process tree, sampled every 50 ms):

- ``floor``: DuckDB reads every CSV and writes Parquet once (benchmarks/duckdb_floor.py);
- ``pandas``: the classic pandas pipeline (benchmarks/pandas_baseline.py);
- ``saleslake``: ``ingest csv`` + ``run`` into a fresh lake, with per-stage times from the
  run ledger;
- ``incremental``: the last export days holding ~1 % of the lines, landed and run on top.

Results go to benchmarks/results/batch-<rows>.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from datetime import datetime
from pathlib import Path

from measure import measure

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
CLI = [PY, "-m", "saleslake.cli"]


def generate(rows: int, work: Path) -> Path:
    data = work / f"data-{rows}"
    if not (data / "generation_summary.json").is_file():
        shutil.rmtree(data, ignore_errors=True)
        measure([*CLI, "generate", "csv", "--out", str(data), "--rows", str(rows), "--seed", "42"])
    return data


def split_increment(data: Path, share: float = 0.01) -> tuple[list[Path], list[Path]]:
    """Base files and the files of the last export days that hold about ``share`` of the lines."""
    summary = json.loads((data / "generation_summary.json").read_text())
    files = sorted(data.glob("*/*.csv"), key=lambda p: (p.stem.rsplit("_", 1)[1], p.name))
    sizes = [p.stat().st_size for p in files]
    budget, taken, cut = sum(sizes) * share, 0, len(files)
    while cut > 0 and taken + sizes[cut - 1] <= budget:
        cut -= 1
        taken += sizes[cut]
    assert summary["rows_written"] > 0
    return files[:cut], files[cut:]


def stage_seconds(home: Path) -> dict[str, float]:
    out = measure([*CLI, "status", "--json", "--limit", "1", "--home", str(home)])
    runs = json.loads(out.stdout)
    stages = {}
    for name, stage in runs[0]["stages"].items():
        details = stage.get("details") or {}
        stages[name] = details
    return stages


def ledger_durations(home: Path) -> dict[str, float]:
    out = measure(
        [
            *CLI,
            "query",
            "SELECT stage, epoch(finished_at) - epoch(started_at) AS s FROM system.runs "
            "WHERE command = 'run' AND finished_at IS NOT NULL AND stage <> 'run' "
            "QUALIFY row_number() OVER (PARTITION BY stage ORDER BY recorded_at DESC) = 1",
            "--format",
            "json",
            "--home",
            str(home),
        ]
    )
    return {r["stage"]: round(float(r["s"]), 2) for r in json.loads(out.stdout)}


def bench(rows: int, work: Path) -> dict:
    data = generate(rows, work)
    result: dict = {"rows": rows, "measured_at": datetime.now().isoformat(timespec="seconds")}
    scratch = work / f"scratch-{rows}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)

    # every contender reads the files from a warm page cache: read cold, the floor (first to
    # run) measured 46 s once where it takes 30-34 s warm
    for path in sorted(data.rglob("*.csv")):
        with open(path, "rb") as f:
            while f.read(1 << 20):
                pass
    floor = measure([PY, str(HERE / "duckdb_floor.py"), str(data), str(scratch / "floor")])
    result["floor"] = {
        "seconds": round(floor.seconds, 2),
        "peak_rss_mb": round(floor.peak_rss_mb),
        "cpu_seconds": round(floor.cpu_seconds, 1),
    }
    print(f"floor: {floor.seconds:.1f} s ({floor.cpu_seconds:.0f} CPU s), {floor.peak_rss_mb:.0f} MB", flush=True)

    pandas = measure([PY, str(HERE / "pandas_baseline.py"), str(data), str(scratch / "pandas")])
    result["pandas"] = {
        "seconds": round(pandas.seconds, 2),
        "peak_rss_mb": round(pandas.peak_rss_mb),
        "cpu_seconds": round(pandas.cpu_seconds, 1),
    }
    print(f"pandas: {pandas.seconds:.1f} s ({pandas.cpu_seconds:.0f} CPU s), {pandas.peak_rss_mb:.0f} MB", flush=True)

    base, increment = split_increment(data)
    home = scratch / "lake"
    listing = scratch / "base-files"
    listing.mkdir()
    for f in base:  # hard links: the same bytes, a folder per region as the exports have
        target = listing / f.parent.name / f.name
        target.parent.mkdir(exist_ok=True)
        target.hardlink_to(f)
    ingest = measure([*CLI, "ingest", "csv", str(listing), "--home", str(home)])
    run = measure([*CLI, "run", "--home", str(home)])
    result["saleslake"] = {
        "ingest_seconds": round(ingest.seconds, 2),
        "ingest_peak_rss_mb": round(ingest.peak_rss_mb),
        "run_seconds": round(run.seconds, 2),
        "run_peak_rss_mb": round(run.peak_rss_mb),
        "total_seconds": round(ingest.seconds + run.seconds, 2),
        # CPU time shows how far a run is from what two cores could do at best
        "ingest_cpu_seconds": round(ingest.cpu_seconds, 1),
        "run_cpu_seconds": round(run.cpu_seconds, 1),
        "stages": ledger_durations(home),
        "gold_timings": {k: round(v, 2) for k, v in (stage_seconds(home).get("gold", {}).get("timings") or {}).items()},
    }
    print(
        f"saleslake: ingest {ingest.seconds:.1f} s ({ingest.cpu_seconds:.0f} CPU s), run {run.seconds:.1f} s "
        f"({run.cpu_seconds:.0f} CPU s), peak {run.peak_rss_mb:.0f} MB "
        f"{result['saleslake']['stages']}",
        flush=True,
    )

    inc_dir = scratch / "increment-files"
    for f in increment:
        target = inc_dir / f.parent.name / f.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.hardlink_to(f)
    inc_ingest = measure([*CLI, "ingest", "csv", str(inc_dir), "--home", str(home)])
    inc_run = measure([*CLI, "run", "--home", str(home)])
    total_inc = inc_ingest.seconds + inc_run.seconds
    result["incremental"] = {
        "files": len(increment),
        "bytes": sum(f.stat().st_size for f in increment),
        "ingest_seconds": round(inc_ingest.seconds, 2),
        "run_seconds": round(inc_run.seconds, 2),
        "total_seconds": round(total_inc, 2),
        "peak_rss_mb": round(inc_run.peak_rss_mb),
        "share_of_full_run": round(total_inc / result["saleslake"]["total_seconds"], 3),
        "stages": ledger_durations(home),
    }
    print(f"incremental: {total_inc:.1f} s ({result['incremental']['share_of_full_run']:.0%} of full)", flush=True)
    shutil.rmtree(scratch, ignore_errors=True)
    return result


def table(results: list[dict]) -> str:
    lines = [
        "| lines | DuckDB floor | pandas baseline | saleslake CSV → gold (ingest + run) | silver / gold stages | × floor | peak RSS saleslake / pandas | +1 % incremental |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s = r["saleslake"]
        lines.append(
            f"| {r['rows']:,} | {r['floor']['seconds']:.1f} s | {r['pandas']['seconds']:.1f} s | {s['total_seconds']:.1f} s "
            f"({s['ingest_seconds']:.1f} + {s['run_seconds']:.1f}) | {s['stages'].get('silver', '?')} s / {s['stages'].get('gold', '?')} s "
            f"| {s['total_seconds'] / r['floor']['seconds']:.1f}× | {max(s['run_peak_rss_mb'], s['ingest_peak_rss_mb']):,} MB / "
            f"{r['pandas']['peak_rss_mb']:,} MB | {r['incremental']['total_seconds']:.1f} s ({r['incremental']['share_of_full_run']:.0%}) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, action="append", help="lines to generate (repeatable)")
    parser.add_argument("--work", type=Path, default=HERE / "work")
    args = parser.parse_args()
    results = []
    for rows in args.rows or [1_000_000]:
        result = bench(rows, args.work)
        (HERE / "results" / f"batch-{rows}.json").write_text(json.dumps(result, indent=2) + "\n")
        results.append(result)
    print(table(results))


if __name__ == "__main__":
    main()
