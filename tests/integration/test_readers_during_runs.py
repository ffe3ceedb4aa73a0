"""Readers see the last committed gold while a run writes: never a half-published star."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from saleslake import api


def test_queries_during_a_rebuild_see_one_consistent_release(tmp_path):
    api.generate_csv(tmp_path / "exports", rows=60_000, seed=3)
    settings = api.settings(home=tmp_path / "lake")
    api.ingest_csv([tmp_path / "exports"], settings=settings)
    api.run(settings=settings)
    consistent = (
        "SELECT (SELECT count(*) FROM gold.fact_sales) AS facts, (SELECT sum(lines) FROM gold.agg_sales_daily) AS agg_lines, "
        "(SELECT count(*) FROM gold.fact_sales f JOIN gold.dim_customer c USING (customer_sk)) AS joined"
    )
    expected = api.query(consistent, settings).to_pylist()[0]
    assert expected["facts"] == expected["agg_lines"] == expected["joined"] > 0

    env = {k: v for k, v in os.environ.items() if not k.startswith("SALESLAKE_")}
    writer = subprocess.Popen(
        [sys.executable, "-m", "saleslake.cli", "rebuild", "gold", "--home", str(settings.home)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = 0
    while writer.poll() is None:
        assert api.query(consistent, settings).to_pylist()[0] == expected
        seen += 1
        time.sleep(0.05)
    assert writer.returncode == 0, writer.stderr
    assert seen >= 3, "the rebuild finished before readers could look at it"
    releases = api.query("SELECT count(*) AS n FROM system.gold_releases", settings).to_pylist()[0]["n"]
    assert releases == 2
    assert api.query(consistent, settings).to_pylist()[0] == expected
