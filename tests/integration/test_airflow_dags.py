"""The Airflow 3 DAGs (airflow/dags) run by real Airflow on real data.

Airflow lives in .venv-airflow (scripts/setup_airflow.sh), so every Airflow step runs in a
subprocess (tests/integration/airflow_driver.py: DagBag parsing, ``dag.test()``, reads of
the metadata DB) against one sqlite AIRFLOW_HOME per session; the lake is then checked
here with saleslake.api. Retry delays are 0 so a retried task does not wait 10 minutes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from helpers import HEADER, ROOT, free_port, free_ports, line, sql, write_csv
from saleslake import api
from saleslake.lake import Lake, open_delta

AIRFLOW_VENV = ROOT / ".venv-airflow"
DAGS = ROOT / "airflow" / "dags"
DRIVER = Path(__file__).with_name("airflow_driver.py")
DAG_IDS = {"saleslake_batch", "saleslake_gold", "saleslake_stream", "saleslake_monitor"}


# -- Airflow in its own venv ------------------------------------------------------------------


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory) -> Path:
    """A migrated sqlite metadata DB for the session; creates .venv-airflow when missing."""
    setup = subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup_airflow.sh")], capture_output=True, text=True, timeout=1800
    )
    assert setup.returncode == 0, f"scripts/setup_airflow.sh failed:\n{setup.stdout}\n{setup.stderr}"
    home = tmp_path_factory.mktemp("airflow-home")
    migrate = subprocess.run(
        [str(AIRFLOW_VENV / "bin" / "airflow"), "db", "migrate"],
        env=_airflow_env(home, {}),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert migrate.returncode == 0, migrate.stderr[-4000:]
    return home


def _airflow_env(airflow_home: Path, saleslake: dict[str, str]) -> dict[str, str]:
    """Airflow's environment: its home, our DAG folder, nothing that calls out, no
    inherited SALESLAKE_* settings, then ``saleslake`` as SALESLAKE_<KEY> variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SALESLAKE_", "AIRFLOW"))}
    env.update(
        {
            "PATH": f"{AIRFLOW_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # asset events queue runs only for unpaused DAGs; the scheduler's view is what we check
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "DO_NOT_TRACK": "1",
            "SALESLAKE_ORCHESTRATION__RETRY_DELAY_MINUTES": "0",
        }
    )
    env.update({f"SALESLAKE_{key}": value for key, value in saleslake.items()})
    return env


def drive(airflow_home: Path, tmp_path: Path, saleslake: dict[str, str], *args: str) -> dict:
    """Run the driver (``dagbag`` or ``test DAG_ID``) in .venv-airflow; its JSON result."""
    out = tmp_path / f"driver-{'-'.join(args)}-{len(list(tmp_path.glob('driver-*.json')))}.json"
    done = subprocess.run(
        [str(AIRFLOW_VENV / "bin" / "python"), str(DRIVER), *args, str(out)],
        env=_airflow_env(airflow_home, saleslake),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    log = out.with_suffix(".log")
    log.write_text(done.stdout + done.stderr)  # Airflow's logs, task logs included
    assert done.returncode == 0 and out.is_file(), (
        f"driver {args} failed:\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}"
    )
    return {**json.loads(out.read_text()), "log": log.read_text()}


def states(result: dict) -> dict[str, str]:
    return {task_id: ti["state"] for task_id, ti in result["tasks"].items()}


# -- a webhook that records alerts ----------------------------------------------------------


class Webhook:
    def __init__(self):
        self.received: list[dict] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):  # keep the test output clean
                pass

        # port 0: the kernel picks a free port while binding, so no other process can take it first
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/alerts?token=secret-token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()


@pytest.fixture(scope="module")
def webhook():
    hook = Webhook()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


# -- the DAG files --------------------------------------------------------------------------


def test_dagbag_loads_every_dag_with_schedules_and_retries_from_config(airflow_home, tmp_path):
    bag = drive(
        airflow_home,
        tmp_path,
        {
            "ORCHESTRATION__RETRIES": "3",
            "ORCHESTRATION__RETRY_DELAY_MINUTES": "7",
            "ORCHESTRATION__BATCH_SCHEDULE": "30 2 * * *",
            "ORCHESTRATION__STREAM_INTERVAL_SECONDS": "45",
            "ORCHESTRATION__MONITOR_INTERVAL_MINUTES": "20",
        },
        "dagbag",
    )
    assert bag["import_errors"] == {}
    dags = bag["dags"]
    assert set(dags) == DAG_IDS
    assert (dags["saleslake_batch"]["timetable"], dags["saleslake_batch"]["summary"]) == (
        "CronTriggerTimetable",
        "30 2 * * *",
    )
    assert (dags["saleslake_stream"]["timetable"], dags["saleslake_stream"]["summary"]) == (
        "DeltaTriggerTimetable",
        "0:00:45",
    )
    assert (dags["saleslake_monitor"]["timetable"], dags["saleslake_monitor"]["summary"]) == (
        "DeltaTriggerTimetable",
        "0:20:00",
    )
    # gold runs on either asset (an AssetAny, as the scheduler deserializes it)
    assert dags["saleslake_gold"]["timetable"] == "AssetTriggeredTimetable"
    assert dags["saleslake_gold"]["summary"] == "Asset"  # Airflow's summary of an any-of condition
    assert dags["saleslake_gold"]["assets"] == ["saleslake://silver/", "saleslake://stream/"]
    for dag in dags.values():
        assert dag["catchup"] is False and dag["max_active_runs"] == 1
        for task_id, task in dag["tasks"].items():
            assert task["on_failure_callback"] == ["alert_task_failure"], task_id
            assert task["retry_delay_seconds"] == 7 * 60, task_id
            assert task["retries"] == (0 if task_id == "check_health" else 3), task_id
    assert dags["saleslake_stream"]["upstream"] == {
        "consume": [],
        "check_lag": ["consume"],
        "announce_new_lines": ["consume"],
    }
    assert dags["saleslake_batch"]["upstream"] == {
        "preflight": [],
        "land_csv": ["preflight"],
        "extract_postgres": ["land_csv"],
        "silver": ["extract_postgres"],
        "quality_gate": ["silver"],
    }
    assert dags["saleslake_gold"]["tasks"]["publish"]["trigger_rule"] == "none_failed"
    outlets = {task_id: t["outlets"] for d in dags.values() for task_id, t in d["tasks"].items() if t["outlets"]}
    assert outlets == {
        "quality_gate": ["saleslake://silver/"],
        "build_gold": ["saleslake://gold/"],
        "announce_new_lines": ["saleslake://stream/"],
    }


def test_a_broken_config_never_breaks_the_import_and_preflight_reports_it(airflow_home, tmp_path, webhook):
    broken = {
        "CONFIG": str(tmp_path / "missing.toml"),
        "HOME": str(tmp_path / "lake"),
        "ALERTS__WEBHOOK_URL": webhook.url,
    }
    bag = drive(airflow_home, tmp_path, broken, "dagbag")
    assert bag["import_errors"] == {} and set(bag["dags"]) == DAG_IDS
    assert bag["dags"]["saleslake_batch"]["summary"] == "0 0 * * *"  # the default @daily

    run = drive(airflow_home, tmp_path, {**broken, "ORCHESTRATION__RETRIES": "0"}, "test", "saleslake_batch")
    assert run["state"] == "failed"
    assert states(run)["preflight"] == "failed"
    assert {states(run)[t] for t in ("land_csv", "extract_postgres", "silver", "quality_gate")} == {"upstream_failed"}
    assert run["asset_events"] == []
    # without readable settings the alert can only be logged: no webhook call
    assert webhook.received == []
    assert (
        f"ALERT saleslake_batch.preflight failed: task preflight of saleslake_batch failed (run {run['run_id']}, "
        f"try 1): configuration: SALESLAKE_CONFIG names {broken['CONFIG']}, which is not a file" in run["log"]
    )

    # a schedule Airflow cannot use: @daily instead, and preflight says why
    bad_schedule = {
        "ORCHESTRATION__BATCH_SCHEDULE": "every day",
        "HOME": str(tmp_path / "lake"),
        "ORCHESTRATION__RETRIES": "0",
    }
    bag = drive(airflow_home, tmp_path, bad_schedule, "dagbag")
    assert bag["import_errors"] == {} and bag["dags"]["saleslake_batch"]["summary"] == "0 0 * * *"
    run = drive(airflow_home, tmp_path, bad_schedule, "test", "saleslake_batch")
    assert states(run)["preflight"] == "failed"
    assert "ALERT saleslake_batch.preflight failed" in run["log"]
    assert "orchestration.batch_schedule 'every day' is not a cron expression" in run["log"]


# -- batch and gold on generated exports ------------------------------------------------------


@pytest.fixture(scope="module")
def batch(airflow_home, tmp_path_factory):
    """Generated exports in an inbox, one batch run and one gold run on a fresh lake."""
    root = tmp_path_factory.mktemp("airflow-batch")
    summary = api.generate_csv(root / "inbox", rows=5_000, seed=23)
    env = {"HOME": str(root / "lake"), "ORCHESTRATION__CSV_INBOX": str(root / "inbox")}
    first = drive(airflow_home, root, env, "test", "saleslake_batch")
    gold = drive(airflow_home, root, env, "test", "saleslake_gold")
    return {
        "summary": summary,
        "env": env,
        "root": root,
        "settings": api.settings(home=root / "lake"),
        "first": first,
        "gold": gold,
    }


def q(settings, query: str) -> list[tuple]:
    return [tuple(r.values()) for r in api.query(query, settings).to_pylist()]


def test_batch_lands_the_inbox_and_silver_matches_the_generator(batch):
    summary, run = batch["summary"], batch["first"]
    assert run["state"] == "success"
    assert states(run) == {
        "preflight": "success",
        "land_csv": "success",
        "extract_postgres": "skipped",
        "silver": "success",
        "quality_gate": "success",
    }
    files = len(list((batch["root"] / "inbox").rglob("*.csv")))
    assert run["xcoms"]["land_csv"]["landed"] == files and run["xcoms"]["land_csv"]["already_landed"] == 0
    silver = run["xcoms"]["silver"]
    assert silver["rows_read"] == summary.rows_written
    assert silver["rows_quarantined"] == summary.defective_rows
    assert silver["rows_duplicate"] == summary.exact_duplicates
    assert silver["rows_valid"] == summary.valid_unique_lines + summary.corrections
    settings = batch["settings"]
    assert q(settings, "SELECT count(*), sum(sales) FROM silver.sales_lines") == [
        (summary.valid_unique_lines, Decimal(summary.expected_silver_sales))
    ]
    assert q(settings, "SELECT count(*) FROM silver.quarantine") == [(summary.defective_rows,)]
    gate = run["xcoms"]["quality_gate"]
    assert gate["rows_read"] == summary.rows_written and gate["share"] <= gate["threshold"]


def test_batch_emits_the_silver_asset_event_that_triggers_gold(batch):
    run = batch["first"]
    assert [(e["uri"], e["task_id"]) for e in run["asset_events"]] == [("saleslake://silver/", "quality_gate")]
    assert run["asset_events"][0]["extra"]["rows_read"] == batch["summary"].rows_written
    # Airflow queued a run of the gold DAG for that event, and the scheduler finds it due
    assert {"dag_id": "saleslake_gold", "uri": "saleslake://silver/"} in run["queued"]
    assert "saleslake_gold" in run["due"]


def test_gold_dag_builds_gold_from_silver(batch):
    run, settings, summary = batch["gold"], batch["settings"], batch["summary"]
    assert run["state"] == "success"
    assert states(run) == {"build_gold": "success", "publish": "skipped"}  # publish_after_gold is off
    assert run["xcoms"]["build_gold"]["tables"]["fact_sales"] == summary.valid_unique_lines
    assert q(settings, "SELECT count(*), sum(sales) FROM gold.fact_sales") == [
        (summary.valid_unique_lines, Decimal(summary.expected_silver_sales))
    ]
    assert q(settings, "SELECT count(*), sum(sales) FROM gold.fact_sales") == q(
        settings, "SELECT count(*), sum(sales) FROM silver.sales_lines"
    )
    assert q(settings, "SELECT sum(lines) FROM gold.agg_sales_daily") == [(summary.valid_unique_lines,)]
    assert [(e["uri"], e["task_id"]) for e in run["asset_events"]] == [("saleslake://gold/", "build_gold")]


def test_batch_again_changes_nothing(batch, airflow_home):
    settings = batch["settings"]
    lake = Lake(settings.home)
    before = (
        q(settings, "SELECT count(*), sum(sales) FROM silver.sales_lines"),
        q(settings, "SELECT count(*) FROM silver.quarantine"),
        open_delta(lake.sales_lines).version(),
        open_delta(lake.quarantine).version(),
    )
    again = drive(airflow_home, batch["root"], batch["env"], "test", "saleslake_batch")
    assert again["state"] == "success"
    files = len(list((batch["root"] / "inbox").rglob("*.csv")))
    assert again["xcoms"]["land_csv"]["landed"] == 0 and again["xcoms"]["land_csv"]["already_landed"] == files
    assert again["xcoms"]["silver"]["rows_read"] == 0
    after = (
        q(settings, "SELECT count(*), sum(sales) FROM silver.sales_lines"),
        q(settings, "SELECT count(*) FROM silver.quarantine"),
        open_delta(lake.sales_lines).version(),
        open_delta(lake.quarantine).version(),
    )
    assert after == before

    # gold reflects silver already: no new release, so no gold asset event
    gold = drive(airflow_home, batch["root"], batch["env"], "test", "saleslake_gold")
    assert gold["state"] == "success"
    assert states(gold) == {"build_gold": "skipped", "publish": "skipped"}
    assert gold["asset_events"] == []
    assert q(settings, "SELECT count(*), sum(sales) FROM gold.fact_sales") == before[0]


# -- monitor ----------------------------------------------------------------------------------


def test_monitor_is_quiet_on_a_healthy_lake_and_alerts_once_when_not(batch, airflow_home, webhook):
    env = {**batch["env"], "ALERTS__WEBHOOK_URL": webhook.url}
    webhook.received.clear()
    healthy = drive(airflow_home, batch["root"], env, "test", "saleslake_monitor")
    assert states(healthy) == {"check_health": "success"}
    assert healthy["xcoms"]["check_health"]["problems"] == []
    assert {s["source_system"] for s in healthy["xcoms"]["check_health"]["sources"]} == {
        f"csv:{region}" for region in batch["summary"].dialects
    }
    assert webhook.received == []

    strict = {
        **env,
        "MONITOR__MAX_SOURCE_AGE_SECONDS": json.dumps({"csv": 0.001}),
        "MONITOR__MAX_QUARANTINE_SHARE": "0.001",
    }
    unhealthy = drive(airflow_home, batch["root"], strict, "test", "saleslake_monitor")
    assert unhealthy["tasks"]["check_health"] == {"state": "failed", "try_number": 1}  # no retries
    assert len(webhook.received) == 1, webhook.received  # the monitor's alert, no second failure alert
    alert = webhook.received[0]
    assert alert["severity"] == "warning" and "health" in alert["title"]
    problems = alert["details"]["problems"]
    assert len(problems) == len(batch["summary"].dialects) + 1
    assert sum("is stale" in p for p in problems) == len(batch["summary"].dialects)
    assert any(p.startswith("quarantine rate") for p in problems)


# -- failure alerts ---------------------------------------------------------------------------


def test_a_bad_export_fails_land_csv_at_once_and_alerts(airflow_home, tmp_path, webhook):
    inbox = tmp_path / "inbox"
    write_csv(inbox / "berlin" / "2021-01-15.csv", HEADER + "\n" + line() + "\n")
    (inbox / "broken.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00")
    webhook.received.clear()
    env = {
        "HOME": str(tmp_path / "lake"),
        "ORCHESTRATION__CSV_INBOX": str(inbox),
        "ORCHESTRATION__RETRIES": "1",
        "ALERTS__WEBHOOK_URL": webhook.url,
    }
    run = drive(airflow_home, tmp_path, env, "test", "saleslake_batch")
    assert run["state"] == "failed"
    # a file the user must fix fails without retries, although one is configured
    assert run["tasks"]["land_csv"] == {"state": "failed", "try_number": 1}
    assert {states(run)[t] for t in ("extract_postgres", "silver", "quality_gate")} == {"upstream_failed"}
    assert run["asset_events"] == []
    assert len(webhook.received) == 1, webhook.received
    alert = webhook.received[0]
    assert alert["severity"] == "error" and alert["title"] == "saleslake_batch.land_csv failed"
    details = alert["details"]
    assert (details["dag_id"], details["task_id"], details["run_id"], details["try_number"]) == (
        "saleslake_batch",
        "land_csv",
        run["run_id"],
        1,
    )
    assert f"{inbox / 'broken.csv'}: binary data, not a CSV text file" in details["error"]
    assert details["error_type"] == "InputFileError"
    assert details["error"] in alert["text"] and details["log_url"]
    # the good file landed anyway; silver waits for the next run
    lake = Lake(tmp_path / "lake")
    assert sql(lake, "SELECT source, original_name FROM system.bronze_manifest") == [("berlin", "2021-01-15.csv")]
    assert open_delta(lake.sales_lines) is None


def test_a_retried_task_alerts_once_after_its_last_try(airflow_home, tmp_path, webhook):
    """PostgreSQL is required (extract_postgres) but down: preflight fails, is retried
    (a service may come back), fails again, and only then alerts."""
    webhook.received.clear()
    env = {
        "HOME": str(tmp_path / "lake"),
        "ORCHESTRATION__EXTRACT_POSTGRES": "true",
        "POSTGRES__PORT": str(free_port()),
        "ORCHESTRATION__RETRIES": "1",
        "ALERTS__WEBHOOK_URL": webhook.url,
    }
    run = drive(airflow_home, tmp_path, env, "test", "saleslake_batch")
    assert run["state"] == "failed"
    assert run["tasks"]["preflight"] == {"state": "failed", "try_number": 2}
    assert len(webhook.received) == 1, webhook.received
    details = webhook.received[0]["details"]
    assert (details["task_id"], details["try_number"], details["error_type"]) == ("preflight", 2, "PreflightFailed")
    assert details["error"].startswith("preflight failed: postgres source: ")


# -- stream -----------------------------------------------------------------------------------


def test_stream_dag_consumes_once_and_announces_only_new_lines(airflow_home, tmp_path, stream_settings, lake, webhook):
    summary = api.produce(2_000, seed=31, settings=stream_settings)
    assert summary.delivered == 2_000
    kafka = stream_settings.kafka
    env = {
        "HOME": str(stream_settings.home),
        "KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "KAFKA__TOPIC": kafka.topic,
        "KAFKA__GROUP_ID": kafka.group_id,
        "ALERTS__WEBHOOK_URL": webhook.url,
        "MONITOR__MAX_STREAM_LAG": "0",
    }
    webhook.received.clear()

    # runs cut short after one batch of at most 10 messages leave a lag: one alert, not two
    short = {**env, "STREAM__MAX_BATCH": "10", "ORCHESTRATION__STREAM_MAX_SECONDS": "0.001"}
    for _ in range(2):
        cut = drive(airflow_home, tmp_path, short, "test", "saleslake_stream")
        assert cut["state"] == "success" and cut["xcoms"]["consume"]["records"] <= 10
        assert cut["xcoms"]["check_lag"]["over"] is True
        assert (
            cut["xcoms"]["check_lag"]["total_lag"]
            == summary.events - sql(lake, "SELECT count(*) FROM bronze.pos_events")[0][0]
        )
    assert [(a["severity"], a["details"]["max_stream_lag"]) for a in webhook.received] == [("warning", 0)]
    assert "lag" in webhook.received[0]["title"]

    # one run consumes the rest whatever the machine's speed (the default bound is 25 s)
    full = {**env, "ORCHESTRATION__STREAM_MAX_SECONDS": "300"}
    first = drive(airflow_home, tmp_path, full, "test", "saleslake_stream")
    assert states(first) == {"consume": "success", "check_lag": "success", "announce_new_lines": "success"}
    assert first["xcoms"]["consume"]["stopped_by"] == "idle"
    assert first["xcoms"]["check_lag"] == {"total_lag": 0, "limit": 0, "over": False}
    assert len(webhook.received) == 1
    rows, total = sql(lake, "SELECT count(*), sum(sales) FROM silver.sales_lines WHERE source_system = 'pos'")[0]
    assert (rows, total) == (summary.valid_lines, Decimal(summary.valid_sales))
    quarantined = sql(lake, "SELECT count(*) FROM silver.quarantine WHERE source_system = 'pos'")[0][0]
    assert quarantined == summary.expected_quarantine_rows
    assert sql(lake, "SELECT count(*) FROM bronze.pos_events") == [(summary.events,)]
    new_lines = first["xcoms"]["consume"]["rows_valid"]
    assert [(e["uri"], e["extra"]["lines"]) for e in first["asset_events"]] == [("saleslake://stream/", new_lines)]
    assert {"dag_id": "saleslake_gold", "uri": "saleslake://stream/"} in first["queued"]

    second = drive(airflow_home, tmp_path, full, "test", "saleslake_stream")
    assert second["xcoms"]["consume"]["records"] == 0
    assert states(second)["announce_new_lines"] == "skipped"
    assert second["asset_events"] == []  # a skipped task records no asset event: gold is not re-triggered
    assert sql(lake, "SELECT count(*) FROM silver.sales_lines WHERE source_system = 'pos'")[0][0] == summary.valid_lines


# -- scripts/airflow.sh -----------------------------------------------------------------------


def _wait_for(what: str, check, proc: subprocess.Popen, log: Path, timeout: float = 240.0):
    """Poll ``check()`` until it returns something truthy; fail with the log when Airflow exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"scripts/airflow.sh exited ({proc.returncode}):\n{log.read_text()[-6000:]}"
        try:
            found = check()
        except OSError:
            found = None
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"{what} not within {timeout:.0f} s:\n{log.read_text()[-6000:]}")


def _described(process) -> str:
    import psutil

    try:
        return f"{process.pid} {process.status()} {' '.join(process.cmdline())[:300]}"
    except psutil.Error:
        return f"{process.pid} (gone)"


def _airflow_processes(airflow_home: Path) -> list[str]:
    """Live processes (zombies are not) whose environment names this AIRFLOW_HOME."""
    import psutil

    home = str(airflow_home.resolve())
    found = []
    for process in psutil.process_iter():
        try:
            if process.status() != psutil.STATUS_ZOMBIE and process.environ().get("AIRFLOW_HOME") == home:
                found.append(_described(process))
        except psutil.Error:
            continue
    return found


def test_airflow_sh_runs_standalone_on_localhost_and_stops_on_ctrl_c(airflow_home, tmp_path):
    import psutil

    port, worker_logs, trigger_logs = free_ports(3)
    env = _airflow_env(tmp_path / "airflow", {"HOME": str(tmp_path / "lake")})
    del env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"]  # paused, as for a user: the scheduler runs nothing
    env.update(
        {
            "AIRFLOW_PORT": str(port),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker_logs),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_logs),
            # no task runs here: a component that hangs on shutdown is stopped after 45 s
            "SALESLAKE_AIRFLOW_STOP_SECONDS": "45",
        }
    )
    script = ROOT / "scripts" / "airflow.sh"
    log = tmp_path / "standalone.log"
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    with log.open("w") as out:
        # a session of its own, with SIGINT as a terminal has it, so the test can press Ctrl-C
        proc = subprocess.Popen(
            ["bash", str(script)],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:

        def healthy():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=5) as answer:
                health = json.loads(answer.read())
            return all(health[part]["status"] == "healthy" for part in ("metadatabase", "scheduler", "dag_processor"))

        _wait_for("a healthy Airflow on 127.0.0.1", healthy, proc, log)
        assert f"Uvicorn running on http://127.0.0.1:{port}" in log.read_text()

        # log in as the README says (the password standalone generated), list the DAGs
        password = json.loads((tmp_path / "airflow" / "simple_auth_manager_passwords.json.generated").read_text())[
            "admin"
        ]
        login = urllib.request.Request(
            f"http://127.0.0.1:{port}/auth/token",
            method="POST",
            data=json.dumps({"username": "admin", "password": password}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(login, timeout=10) as answer:
            token = json.loads(answer.read())["access_token"]

        def parsed():
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/v2/dags", headers={"Authorization": f"Bearer {token}"}
            )
            with urllib.request.urlopen(request, timeout=10) as answer:
                listed = {d["dag_id"] for d in json.loads(answer.read())["dags"]}
            return listed if listed >= DAG_IDS else None

        assert _wait_for("the four DAGs in the metadata DB", parsed, proc, log) == DAG_IDS
        errors = subprocess.run(
            ["bash", str(script), "dags", "list-import-errors", "-o", "json"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert errors.returncode == 0, errors.stderr[-4000:]
        assert json.loads(errors.stdout.strip().splitlines()[-1]) == []  # warnings may come first

        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        assert proc.wait(timeout=120) == 0
        # when the command has returned, no Airflow process is left (orphans included), and
        # this test process has no child it did not have before
        assert _airflow_processes(tmp_path / "airflow") == []
        assert [_described(c) for c in psutil.Process().children(recursive=True) if c.pid not in before] == []
    finally:
        for child in psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []:
            child.kill()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
