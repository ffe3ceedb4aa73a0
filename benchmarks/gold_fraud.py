"""Gold benchmark with lines that have an event time (the history fraud rules' work).

    .venv/bin/python benchmarks/gold_fraud.py --rows 1000000 [--pos-share 1.0]

Writes a synthetic silver of ``--rows`` lines straight into a fresh lake (no CSV parsing:
this measures gold): transactions of 1-3 lines over 60 days, ``--pos-share`` of them
point-of-sale lines with an event time, a card or a loyalty customer (the rest CSV lines
with a date only), 1,800 products, quantities 1-6 and a few bulk ones. Then times, in this
process, with build_gold's own timings:

- ``full``: the first build (every model, every judged line decided);
- ``new``: +1 % lines in the last hour (what a stream adds between two gold refreshes);
- ``late``: +0.1 % lines at random times over the 60 days (late data everywhere).

Each step also reports, from dbt's run_results.json, the seconds of the models that decide
the history fraud rules (``fraud_models``: int_product_quantity_days, int_fraud_scope,
int_fraud_evaluated, int_fraud_lines) beside those of every model (``all_models``), so
their share of a build is read directly; the two overlap a little when dbt runs models
side by side.

Results go to benchmarks/results/gold-fraud-<rows>[-pos<share>].json and stdout.
Run the same script from an older checkout (its own src/ is put first on sys.path) to
compare code versions on the same data.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

import duckdb  # noqa: E402
from deltalake import write_deltalake  # noqa: E402

from saleslake import api  # noqa: E402
from saleslake.contract import SALES_LINES_SCHEMA  # noqa: E402
from saleslake.gold.build import build_gold, dbt_dirs  # noqa: E402
from saleslake.lake import Lake  # noqa: E402

DAYS = 60
START = "2026-01-01 00:00:00+00"
#: the models that decide velocity and quantity_above_norm (macros/fraud.sql)
FRAUD_MODELS = ("int_product_quantity_days", "int_fraud_scope", "int_fraud_evaluated", "int_fraud_lines")


def silver_batch(first: int, rows: int, pos_share: float, seed: str, window: tuple[float, float]) -> object:
    """Lines ``first`` .. ``first + rows - 1`` as Arrow (SALES_LINES_SCHEMA); transaction
    times uniform in ``window`` (fractions of the 60 days)."""
    lo, hi = window
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        return (
            con.sql(
                f"""
                with base as (
                    select i, i // 2 as tx,
                           hash('t' || (i // 2) || '{seed}') as h,
                           hash('l' || i || '{seed}') as g
                    from range({first}, {first + rows}) t(i)
                ),
                lines as (
                    select *,
                           (h % 1000) < {int(pos_share * 1000)} as pos,
                           timestamptz '{START}'
                               + to_microseconds(cast(({lo} + ({hi} - {lo}) * ((h >> 8) % 1000000) / 1e6)
                                                      * {DAYS} * 86400e6 as bigint)) as ts,
                           -- popular products first (a skewed catalog of 1,800)
                           cast(floor(pow((g % 1000003) / 1000003.0, 2.5) * 1800) as bigint) as p,
                           case when g % 500 = 0 then 40 else 1 + cast((g >> 12) % 6 as bigint) end as q,
                           (h >> 20) % 10 as pay
                    from base
                )
                select
                    md5(case when pos then 'pos' else 'csv:bench' end || chr(31) || 'T-' || tx || chr(31) || (i % 2))
                        as line_key,
                    case when pos then 'pos' else 'csv:bench' end as source_system,
                    'T-' || tx as order_id, cast(i % 2 as varchar) as line_id,
                    cast(ts as date) as order_date,
                    case when pos then ts end as order_ts,
                    cast(ts as date) as ship_date, 'In Store' as ship_mode, cast(null as varchar) as order_priority,
                    case when pay < 4 then 'WALK-IN' else 'CG-' || ((h >> 30) % 50000) end as customer_id,
                    cast(null as varchar) as customer_name, cast(null as varchar) as segment,
                    'City ' || (h % 150) as city, 'State' as state, 'France' as country, '69003' as postal_code,
                    'EU' as market, 'Central' as region,
                    case when pos then 'ST-' || (h % 150) end as store_id,
                    'P-' || p as product_id, 'Product ' || p as product_name, 'Office Supplies' as category,
                    'Paper' as sub_category,
                    q as quantity, cast(12.5 as decimal(18, 4)) as unit_price,
                    cast(12.5 * q as decimal(18, 4)) as sales, cast(0 as decimal(9, 4)) as discount,
                    cast(null as decimal(18, 4)) as profit, cast(null as decimal(18, 4)) as shipping_cost,
                    'EUR' as currency, cast(0 as decimal(9, 4)) as tax_rate, cast(0 as decimal(18, 4)) as tax_amount,
                    false as is_suspected_fraud, cast([] as varchar[]) as fraud_reasons, false as is_outlier,
                    90 as dq_score, cast(hash(i, '{seed}') as varchar) as row_hash,
                    'bronze/events/pos' as bronze_uri, 'kafka:pos/0@' || i as source_position,
                    i as landed_seq, 'bench' as batch_id, timestamptz '{START}' as ingested_at,
                    strftime(cast(ts as date), '%Y-%m') as order_month,
                    case when pos then ['card', 'card', 'cash', 'mobile'][cast(1 + pay % 4 as bigint)] end as payment_method,
                    case when pos and pay % 4 in (0, 1, 3) then 'fp-' || ((h >> 40) % 200000) end
                        as card_fingerprint
                from lines
                """
            )
            .to_arrow_table()
            .cast(SALES_LINES_SCHEMA)
        )
    finally:
        con.close()


def model_seconds(lake: Lake) -> dict:
    """Seconds per model of the last dbt build (its run_results.json): the fraud models
    one by one, their sum, and the sum over every model (tests left out)."""
    target, _ = dbt_dirs(lake)
    results = json.loads((target / "run_results.json").read_text())["results"]
    models = {
        r["unique_id"].split(".")[-1]: r["execution_time"] for r in results if r["unique_id"].startswith("model.")
    }
    fraud = {name: round(models.get(name, 0.0), 2) for name in FRAUD_MODELS}
    return {"fraud_models": round(sum(fraud.values()), 2), "all_models": round(sum(models.values()), 2), **fraud}


def timed_build(lake: Lake, settings, name: str) -> dict:
    started = time.perf_counter()
    result = build_gold(lake, settings, run_id=name)
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "timings": {k: round(v, 2) for k, v in result.timings.items()},
        "models": model_seconds(lake),
        "fact_changes": result.fact_changes,
        "facts": result.tables.get("fact_sales"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pos-share", type=float, default=1.0)
    parser.add_argument("--work", type=Path, default=HERE / "work" / "gold_fraud")
    args = parser.parse_args()
    home = args.work / f"lake-{args.rows}"
    shutil.rmtree(home, ignore_errors=True)
    lake = Lake(home)
    settings = api.settings(home=home)
    out: dict = {
        "rows": args.rows,
        "pos_share": args.pos_share,
        "at": datetime.now().isoformat(timespec="seconds"),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],  # a shared machine's other work
    }

    def append(first: int, rows: int, seed: str, window: tuple[float, float]) -> None:
        table = silver_batch(first, rows, args.pos_share, seed, window)
        write_deltalake(str(lake.sales_lines), table, mode="append", partition_by=["order_month"])

    append(0, args.rows, "base", (0.0, 1.0))
    out["full"] = timed_build(lake, settings, "full")
    append(args.rows, args.rows // 100, "new", (1.0 - 1 / (24 * DAYS), 1.0))
    out["new"] = timed_build(lake, settings, "new")
    append(args.rows * 2, args.rows // 1000, "late", (0.0, 1.0))
    out["late"] = timed_build(lake, settings, "late")
    suffix = "" if args.pos_share == 1.0 else f"-pos{args.pos_share:g}"
    path = HERE / "results" / f"gold-fraud-{args.rows}{suffix}.json"
    path.write_text(json.dumps(out, indent=2, default=str))
    for step in ("full", "new", "late"):
        r = out[step]
        m = r["models"]
        print(
            f"{step:5} {r['seconds']:7.2f} s  {r['timings']}  fraud models {m['fraud_models']:.2f} s "
            f"of {m['all_models']:.2f} s of models  recomputed {r['fact_changes'].get('recomputed')}"
        )
    print(f"written {path}")


if __name__ == "__main__":
    main()
