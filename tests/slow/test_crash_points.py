"""kill -9 at every named crash point (saleslake.crashpoints), then run the command again:
the lake (and the PostgreSQL warehouse) equals an uninterrupted run's.

No timing anywhere: a process is killed by the test-only switch at the n-th pass of a
point (``SALESLAKE_TESTONLY_CRASH_AT``), so where it dies does not depend on how fast or
busy the machine is.

Each scenario (a list of CLI steps on one lake) runs once uninterrupted, recording per
step the crash points passed, a fingerprint of the lake (and warehouse), and a copy of the
lake (and a template of the warehouse database) before each step. A test restores the
state before the step, runs the step with the switch (it must die by SIGKILL at that
point), runs it again without, and compares the fingerprint with the clean run's. The
lake always lives at the same path, as a crashed lake does when it is run again.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest
from deltalake import DeltaTable

from saleslake.crashpoints import CRASH_AT_ENV, CRASH_LOG_ENV, POINTS
from saleslake.devservices.postgres import PostgresService
from saleslake.gold.release import gold_release_tables, releases
from saleslake.lake import Lake, register_snapshots

# -- scenarios ------------------------------------------------------------------------------


@dataclass
class Step:
    command: str  # the command as crashpoints.POINTS names it
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Scenario:
    name: str
    commands: tuple[str, ...]  # the commands whose points it exercises
    max_kill_pass: int = 1_000_000  # a pass every run reaches (batches of a stream vary)
    # after a killed step's rerun, also run the steps after it and compare each with the
    # clean run's (what they build from the repaired lake must be the same too)
    finish: bool = False


BATCH = Scenario("batch", ("ingest csv", "run", "publish postgres", "rebuild gold"))
# 3,000 events in batches of at most 400: every per-batch point passes at least 8 times;
# then gold, whose history fraud flags (velocity, quantity_above_norm) must not depend on
# where the stream was killed
STREAM = Scenario("stream", ("stream",), max_kill_pass=4, finish=True)
OLTP = Scenario("oltp", ("ingest postgres",))
SCENARIOS = (BATCH, STREAM, OLTP)
SCENARIO_OF = {command: s for s in SCENARIOS for command in s.commands}
#: Commands whose points another test kills (copy-lake compares no pipeline fingerprint:
#: its rerun verifies the copy object by object).
KILLED_ELSEWHERE = {"copy-lake": "tests/integration/pipeline/test_copy_lake.py"}

BASE_ENV = {
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "DO_NOT_TRACK": "1",
    "SALESLAKE_CSV__CHUNK_BYTES": "60000",  # ~2,000 lines: 9 chunks, 9 silver commits per table
    "SALESLAKE_TAX__FLAT_RATE": "0.08",
}


def test_the_scenarios_cover_every_command_that_owns_a_point():
    assert {c for p in POINTS.values() for c in p.commands} <= set(SCENARIO_OF) | set(KILLED_ELSEWHERE)
    assert len(POINTS) >= 20


# -- running a step -------------------------------------------------------------------------


def run_step(ref: Reference, step: Step, log: Path, crash_at: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALESLAKE_")} | BASE_ENV | ref.env | step.env
    env["SALESLAKE_HOME"] = str(ref.home)
    env[CRASH_LOG_ENV] = str(log)
    if crash_at:
        env[CRASH_AT_ENV] = crash_at
    if "SALESLAKE_KAFKA__TOPIC" in env:  # a group of its own: a killed member never holds partitions
        env["SALESLAKE_KAFKA__GROUP_ID"] = f"crash-{uuid.uuid4().hex[:8]}"
    log.unlink(missing_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "saleslake.cli", *step.args],
        env=env,
        cwd=ref.root,
        capture_output=True,
        text=True,
    )


def passes_of(log: Path) -> list[tuple[str, int]]:
    if not log.exists():
        return []
    return [(name, int(n)) for name, n in (line.split("\t") for line in log.read_text().splitlines())]


# -- fingerprints ---------------------------------------------------------------------------

#: Per lake table, the columns left out: when and in which batch a row was written, not
#: what it holds. (An operational extract redone after a crash gets the next extract
#: number, so OLTP lines may carry another landed_seq.)
LINEAGE = (
    "EXCLUDE (bronze_uri, batch_id, ingested_at) "
    "REPLACE (CASE WHEN source_system = 'oltp' THEN NULL ELSE landed_seq END AS landed_seq)"
)
LAKE_TABLES = {
    "system.bronze_manifest": "EXCLUDE (landed_at, bronze_uri)",
    "silver.sales_lines": LINEAGE,
    "silver.quarantine": LINEAGE,
    "silver.reference_stores": "",
    "silver.reference_products": "",
    "silver.reference_customers": "",
    "bronze.pos_events": "EXCLUDE (ingest_date)",
    "system.pos_line_keys": "",
}


def fingerprint(home: Path, warehouse: Warehouse | None) -> dict[str, object]:
    """Row count and an order-free hash of every row, per lake table, per gold table of the
    latest release and per warehouse table; a few readable sums beside them."""
    lake = Lake(home)
    prints: dict[str, object] = {}
    con = duckdb.connect()
    try:
        tables: dict[str, Path | DeltaTable] = {
            k: v for k, v in lake.delta_tables().items() if k in LAKE_TABLES or k == "system.oltp_positions"
        }
        register_snapshots(con, tables)
        register_snapshots(con, {f"gold.{name}": t for name, t in gold_release_tables(lake).items()})
        names = {
            f"{s}.{t}"
            for s, t in con.execute("SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal").fetchall()
        }
        for table, columns in LAKE_TABLES.items():
            if table in names:
                prints[table] = _hash_rows(con, f"SELECT * {columns} FROM {_q(table)}")
        if "silver.sales_lines" in names:
            prints["silver.sales_lines sums"] = con.execute(
                "SELECT split_part(source_system, ':', 1), count(*), sum(sales), sum(tax_amount) "
                f"FROM {_q('silver.sales_lines')} GROUP BY ALL ORDER BY 1"
            ).fetchall()
        if "system.oltp_positions" in names:
            from saleslake.sources.postgres import committed_seq

            # (what the committed extract took is left out: one redone after a crash takes nothing)
            prints["system.oltp_positions (committed)"] = _hash_rows(
                con,
                "SELECT table_name, watermark_ts, watermark_key, tail "
                f"FROM {_q('system.oltp_positions')} WHERE extract_seq = {committed_seq(lake)}",
            )
        gold = sorted(n.split(".", 1)[1] for n in names if n.startswith("gold."))
        prints["gold release tables"] = gold
        for name in gold:
            prints[f"gold.{name}"] = _hash_rows(con, f"SELECT * FROM {_q('gold.' + name)}")
    finally:
        con.close()
    if warehouse is not None:
        prints.update(warehouse.fingerprint(lake))
    return prints


def _q(table: str) -> str:
    schema, name = table.split(".")
    return f'memory."{schema}"."{name}"'


def _hash_rows(con: duckdb.DuckDBPyConnection, select: str) -> tuple:
    return tuple(con.execute(f"SELECT count(*), coalesce(sum(hash(t)), 0) FROM ({select}) t").fetchall()[0])


# -- PostgreSQL: the warehouse (templates per step) and the operational shop --------------


@dataclass
class Warehouse:
    service: PostgresService
    database: str

    def admin(self, dbname: str = "postgres"):
        import psycopg

        s = self.service
        return psycopg.connect(
            host="127.0.0.1", port=s.port, dbname=dbname, user=s.admin_user, password=s.password("owner"),
            autocommit=True,
        )  # fmt: skip

    def clone(self, source: str, target: str, role: str) -> None:
        from saleslake.devservices.postgres import create_database

        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{target}" TEMPLATE "{source}" OWNER "{self.service.role_name(role)}"')
        create_database(self.service, target, role)  # connect grants (not copied from a template)

    def template(self, step: int) -> str:
        return f"{self.database}_before_{step}"

    def fingerprint(self, lake: Lake) -> dict[str, object]:
        out: dict[str, object] = {}
        with self.admin(self.database) as conn:
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'gold' ORDER BY 1"
                ).fetchall()
            ]
            out["warehouse tables"] = tables
            for table in tables:
                if table in ("saleslake_publish_log", "saleslake_schema_version"):
                    (rows,) = conn.execute(f'SELECT count(*) FROM gold."{table}"').fetchone()
                    out[f"warehouse.{table}"] = rows
                else:
                    out[f"warehouse.{table}"] = tuple(
                        conn.execute(
                            f'SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)), 0) FROM gold."{table}" t'
                        ).fetchone()
                    )
            if "saleslake_publish_log" in tables:
                last = conn.execute(
                    "SELECT release_id FROM gold.saleslake_publish_log ORDER BY publish_id DESC LIMIT 1"
                ).fetchone()
                published = releases(lake)
                out["warehouse holds the lake's latest release"] = bool(
                    last and published and last[0] == published[-1]["release_id"]
                )
        return out


def postgres_env(service, shop: str, warehouse: str) -> dict[str, str]:
    from saleslake.devservices.postgres import PASSWORD_ENV

    env = {
        "SALESLAKE_POSTGRES__PORT": str(service.port),
        "SALESLAKE_POSTGRES__DATABASE": shop,
        "SALESLAKE_POSTGRES__WAREHOUSE_DATABASE": warehouse,
    }
    env.update({f"{name}_FILE": str(service.password_file(role)) for role, name in PASSWORD_ENV.items()})
    return env


# -- the clean reference run of a scenario -------------------------------------------------


@dataclass
class Reference:
    scenario: Scenario
    root: Path
    steps: list[Step]
    env: dict[str, str]
    warehouse: Warehouse | None = None
    passes: list[Counter] = field(default_factory=list)  # crash points passed, per step
    prints: list[dict] = field(default_factory=list)  # fingerprint after each step

    @property
    def home(self) -> Path:
        return self.root / "lake"

    def before(self, step: int) -> Path:
        return self.root / f"lake-before-{step}"

    def snapshot(self, step: int) -> None:
        if self.home.exists():
            shutil.copytree(self.home, self.before(step), symlinks=True)
        if self.warehouse is not None:
            self.warehouse.clone(self.warehouse.database, self.warehouse.template(step), "warehouse")

    def restore(self, step: int) -> None:
        """The lake (and warehouse) exactly as the clean run had them before ``step``."""
        shutil.rmtree(self.home, ignore_errors=True)
        if self.before(step).exists():
            shutil.copytree(self.before(step), self.home, symlinks=True)
        if self.warehouse is not None:
            self.warehouse.clone(self.warehouse.template(step), self.warehouse.database, "warehouse")

    def fingerprint(self) -> dict[str, object]:
        return fingerprint(self.home, self.warehouse)

    def run_clean(self, prepare: Callable[[Path], None] | None = None) -> Reference:
        if prepare is not None:
            prepare(self.home)
        for k, step in enumerate(self.steps):
            self.snapshot(k)
            log = self.root / f"clean-{k}.log"
            done = run_step(self, step, log)
            assert done.returncode == 0, f"clean step {k} {step.args}: {done.stderr[-3000:]}"
            self.passes.append(Counter(name for name, _ in passes_of(log)))
            self.prints.append(self.fingerprint())
        return self

    def last_step_passing(self, point: str, command: str) -> int | None:
        steps = [k for k, s in enumerate(self.steps) if s.command == command and self.passes[k][point]]
        return steps[-1] if steps else None


def correction_of(source: Path, target: Path) -> None:
    """A later export of the same lines with another ship mode: corrections (latest wins)."""
    text = source.read_text(encoding="utf-8-sig")
    assert "Standard Class" in text
    target.write_text(text.replace("Standard Class", "Same Day"), encoding="utf-8")


def build_batch(root: Path, request: pytest.FixtureRequest) -> Reference:
    from saleslake import api
    from saleslake.devservices.postgres import create_database

    service = request.getfixturevalue("postgres_service")
    first, second = root / "exports-1", root / "exports-2"
    api.generate_csv(first, rows=2_000, error_rate=0.03, seed=5)
    api.generate_csv(second, rows=800, error_rate=0.03, seed=6)
    # corrections of lines landed by the first ingest, in the same source (folder)
    originals = sorted(p for p in first.rglob("*.csv") if "Standard Class" in p.read_text(encoding="utf-8-sig"))
    for original in originals[:3]:
        folder = second / original.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        correction_of(original, folder / f"corrected-{original.name}")
    database = f"crash_wh_{uuid.uuid4().hex[:8]}"
    create_database(service, database, "warehouse")
    ingest = ["ingest", "csv"]
    steps = [
        Step("ingest csv", [*ingest, str(first)]),
        Step("run", ["run"]),
        Step("publish postgres", ["publish", "postgres"]),
        Step("ingest csv", [*ingest, str(second)]),
        Step("run", ["run"]),
        Step("publish postgres", ["publish", "postgres"]),
        Step("rebuild gold", ["rebuild", "gold"]),
    ]
    env = postgres_env(service, "shop", database)
    return Reference(BATCH, root, steps, env, Warehouse(service, database)).run_clean()


def build_stream(root: Path, request: pytest.FixtureRequest) -> Reference:
    broker = request.getfixturevalue("kafka_broker")
    topic = f"pos.crash.{uuid.uuid4().hex[:8]}"
    env = {
        "SALESLAKE_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "SALESLAKE_KAFKA__TOPIC": topic,
        "SALESLAKE_KAFKA__CLIENT": '{"session.timeout.ms": "6000", "heartbeat.interval.ms": "1000"}',
        # a norm from 5 lines: 3,000 events give few products 20 lines before a bulk sale
        "SALESLAKE_FRAUD__QUANTITY_NORM_MIN_LINES": "5",
    }
    steps = [
        Step("stream", ["stream", "--until-idle", "--max-batch", "400"]),
        Step("rebuild gold", ["rebuild", "gold"]),
    ]
    reference = Reference(STREAM, root, steps, env)
    # the events once, on the topic every lake reads (produce also registers the catalog
    # in the lake it is given: a scratch one here, each test lake registers its own)
    produce = Step("produce", ["produce", "--events", "3000", "--seed", "11", "--home", str(root / "producer")])
    done = run_step(reference, produce, root / "produce.log")
    assert done.returncode == 0, done.stderr[-3000:]

    def register_catalog(home: Path) -> None:
        from saleslake.sample.pos_events import register_reference

        register_reference(Lake(home), 42)

    reference.run_clean(register_catalog)
    # the events trip every fraud rule, those that need history included
    reasons = history_reasons_of(reference.home)
    assert {"velocity", "quantity_above_norm", "amount_above_threshold"} <= set(reasons), reasons
    return reference


def history_reasons_of(home: Path) -> Counter:
    """Fact lines per fraud reason in the lake's latest gold release."""
    con = duckdb.connect()
    try:
        register_snapshots(con, {f"gold.{n}": t for n, t in gold_release_tables(Lake(home)).items()})
        rows = con.execute(
            "SELECT reason, count(*) FROM (SELECT unnest(string_split(fraud_reasons, ',')) AS reason "
            "FROM gold.fact_sales) WHERE reason <> '' GROUP BY 1"
        ).fetchall()
    finally:
        con.close()
    return Counter(dict(rows))


def build_oltp(root: Path, request: pytest.FixtureRequest) -> Reference:
    from saleslake.devservices.postgres import create_database

    service = request.getfixturevalue("postgres_service")
    tag = uuid.uuid4().hex[:8]
    shops = [f"crash_shop_{tag}_0", f"crash_shop_{tag}_1"]
    create_database(service, shops[0], "owner")
    reference = Reference(OLTP, root, [], {})
    fill = Step(
        "generate oltp", ["generate", "oltp", "--orders", "1500", "--seed", "3"], postgres_env(service, shops[0], "x")
    )
    done = run_step(reference, fill, root / "fill.log")
    assert done.returncode == 0, done.stderr[-3000:]
    Warehouse(service, shops[0]).clone(shops[0], shops[1], "owner")
    mutate = Step("generate oltp", ["generate", "oltp", "--mutate"], postgres_env(service, shops[1], "x"))
    done = run_step(reference, mutate, root / "mutate.log")
    assert done.returncode == 0, done.stderr[-3000:]
    reference.steps = [
        Step("ingest postgres", ["ingest", "postgres"], postgres_env(service, shop, "x")) for shop in shops
    ]
    return reference.run_clean()


BUILDERS = {"batch": build_batch, "stream": build_stream, "oltp": build_oltp}


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return {"root": tmp_path_factory.mktemp("crash-points")}


def reference_of(scenario: Scenario, references: dict, request: pytest.FixtureRequest) -> Reference:
    """The scenario's clean run, made once per module, when a test first needs it."""
    if scenario.name not in references:
        root = references["root"] / scenario.name
        root.mkdir()
        references[scenario.name] = BUILDERS[scenario.name](root, request)
    return references[scenario.name]


# -- the tests ------------------------------------------------------------------------------

#: (point, command) for every command that passes a point; the first one is killed there.
PAIRS = [(point, command) for point in POINTS for command in POINTS[point].commands if command in SCENARIO_OF]
KILLS = [(point, p.commands[0]) for point, p in POINTS.items() if p.commands[0] in SCENARIO_OF]


def test_every_crash_point_is_passed_by_a_clean_run_of_each_command_that_owns_it(references, request):
    missing = []
    for point, command in PAIRS:
        reference = reference_of(SCENARIO_OF[command], references, request)
        if reference.last_step_passing(point, command) is None:
            missing.append(f"{point} ({command})")
    assert not missing, f"crash points no clean run passes: {', '.join(missing)}"


@pytest.mark.parametrize(("point", "command"), KILLS, ids=[f"{c.replace(' ', '_')}:{p}" for p, c in KILLS])
def test_kill_at_point_then_rerun_equals_clean_run(point: str, command: str, references, request):
    reference = reference_of(SCENARIO_OF[command], references, request)
    k = reference.last_step_passing(point, command)
    assert k is not None, f"no clean {command} passes {point}"
    step = reference.steps[k]
    # the middle pass: some of the work committed, some not
    n = min((reference.passes[k][point] + 1) // 2, reference.scenario.max_kill_pass)
    reference.restore(k)
    log = reference.root / "killed.log"

    killed = run_step(reference, step, log, crash_at=f"{point}:{n}")
    assert killed.returncode == -signal.SIGKILL, f"{step.args} at {point}:{n}: {killed.stderr[-3000:]}"
    assert passes_of(log)[-1] == (point, n)

    again = run_step(reference, step, reference.root / "again.log")
    assert again.returncode == 0, f"rerun of {step.args} after a kill at {point}:{n}: {again.stderr[-3000:]}"
    assert reference.fingerprint() == reference.prints[k]
    if reference.scenario.finish:
        for later in range(k + 1, len(reference.steps)):
            done = run_step(reference, reference.steps[later], reference.root / "later.log")
            assert done.returncode == 0, f"step {later} after a kill at {point}:{n}: {done.stderr[-3000:]}"
            assert reference.fingerprint() == reference.prints[later], f"step {later} after a kill at {point}:{n}"


RANDOM_SEED = int(os.environ.get("SALESLAKE_TEST_CRASH_SEED", "20261122"))


def test_random_kills_along_the_batch_scenario_then_reruns_equal_clean_run(references, request):
    """Kills at random points and passes (fixed seed: SALESLAKE_TEST_CRASH_SEED), one or
    two in a row on one step (a crash while recovering from a crash), on one lake through
    every step of the batch scenario; after each step's clean rerun the lake equals the
    clean run's, and the next step starts from that repaired lake."""
    reference = reference_of(BATCH, references, request)
    rng = random.Random(RANDOM_SEED)
    reference.restore(0)
    kills = []
    for k, step in enumerate(reference.steps):
        points = sorted(reference.passes[k].items())
        for _ in range(rng.randint(1, 2)):
            point, count = rng.choice(points)
            n = rng.randint(1, count)
            done = run_step(reference, step, reference.root / "random.log", crash_at=f"{point}:{n}")
            if done.returncode == 0:
                break  # the repaired run had less to do and never got there: nothing to kill
            assert done.returncode == -signal.SIGKILL, f"seed {RANDOM_SEED}, step {k} at {point}:{n}: {done.stderr}"
            kills.append(f"{k}:{point}:{n}")
        again = run_step(reference, step, reference.root / "random-again.log")
        assert again.returncode == 0, f"seed {RANDOM_SEED}, kills {kills}: {again.stderr[-3000:]}"
        assert reference.fingerprint() == reference.prints[k], f"seed {RANDOM_SEED}, after step {k}, kills {kills}"
    assert kills, f"seed {RANDOM_SEED}: no kill happened"
    print(f"seed {RANDOM_SEED}: killed at {', '.join(kills)}")  # step:point:pass (shown with -s)
