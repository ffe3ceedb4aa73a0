"""What people read fits an 80-column terminal and a pipe: no line longer than the
terminal, and no number or id cut to an ellipsis ("20,0…"); text folds instead: a long
summary wraps at a space with its continuation indented, never inside a number, an id or
a path (a path longer than the line gets a line of its own). An error is the exception:
one line whatever its length (CONTRACT §1), so a pipe's grep gets all of it. The `export`
lines of `services` stay one line each, and the rest of that output is a shell comment,
so it can be eval'd."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import pytest

from helpers import HEADER, build_gold_lake, free_port, ledger_counts, line, messages, printed_counts, sql, write_csv
from saleslake import api
from saleslake.lake import Lake

CLI = [sys.executable, "-m", "saleslake.cli"]


@pytest.fixture(scope="module")
def lake_home(tmp_path_factory) -> Path:
    return build_gold_lake(tmp_path_factory.mktemp("output"))


def saleslake(home: Path, *args: str, columns: int = 80) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALESLAKE_")}
    env["COLUMNS"] = str(columns)
    done = subprocess.run(
        [*CLI, *args, "--home", str(home)], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("columns", [80, 60, 40])
def test_status_fits_the_terminal_and_shows_every_count_whole(lake_home, columns):
    text = saleslake(lake_home, "status", columns=columns)
    assert max(len(line) for line in text.splitlines()) <= columns, text
    assert "…" not in text, text
    runs = api.status(settings=api.settings(home=lake_home))
    assert "run" in [r["command"] for r in runs], runs
    lines = text.splitlines()
    starts = [next(i for i, t in enumerate(lines) if t.startswith(r["run_id"] + " ")) for r in runs]  # ids whole
    for run, start, end in zip(runs, starts, [*starts[1:], len(lines)], strict=True):
        block = "\n".join(lines[start + 1 : end])  # the run's own lines: its counts, the ledger's
        assert printed_counts(block, run["stages"]) == ledger_counts(run["stages"]), text
    for source in api.freshness(api.settings(home=lake_home)):
        assert source["source_system"] in text and f"{source['silver_lines']:,}" in text


def test_query_and_quarantine_fold_text_and_keep_numbers_whole(lake_home):
    total = sql(Lake(lake_home), "SELECT sum(sales) FROM gold.fact_sales")[0][0]
    text = saleslake(lake_home, "query", "SELECT region, sum(sales) AS sales FROM gold.agg_sales_daily GROUP BY 1")
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text, text
    cells = [line.split("│")[-2].strip() for line in text.splitlines() if line.count("│") == 3]
    assert sum(Decimal(c) for c in cells if c[:1].isdigit()) == total  # every amount whole
    text = saleslake(lake_home, "quarantine", "--limit", "3")
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text, text


# -- every other command, through the real CLI at 80 columns into a pipe ------------------

GOLD_TABLES = ("dim_date", "dim_customer", "dim_product", "dim_store", "dim_geography", "fact_sales", "agg_sales_daily")


def cli(*args: str, home: Path, env: dict[str, str] | None = None, ok: bool = True) -> subprocess.CompletedProcess:
    """The real command at COLUMNS=80, its output into a pipe; ``env`` adds SALESLAKE_
    variables to a clean environment."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SALESLAKE_")}
    environment.update(env or {}, COLUMNS="80")
    done = subprocess.run(
        [*CLI, *args, "--home", str(home)], capture_output=True, text=True, env=environment, timeout=600, check=False
    )
    if ok:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def too_wide(text: str, whole: Sequence[str] = ()) -> list[str]:
    """Lines over 80 columns, but for an `export` line of `services` (eval'd: one line
    whatever its length) and a line holding one word alone (or one of ``whole``: a path
    or DSN longer than the line stays whole)."""
    wide = []
    for text_line in text.splitlines():
        words = text_line.lstrip("# ")
        for value in whole:
            words = words.replace(value, "PATH")
        if len(text_line) > 80 and not text_line.lstrip().startswith("export ") and len(words.split()) > 1:
            wide.append(text_line)
    return wide


def latest_run(home: Path) -> dict:
    return json.loads(cli("status", "--json", "--limit", "1", home=home).stdout)[0]


def gold_counts(home: Path) -> dict[str, int]:
    lake = Lake(home)
    return {name: sql(lake, f"SELECT count(*) FROM gold.{name}")[0][0] for name in GOLD_TABLES}


def assert_run_summary(text: str, home: Path) -> None:
    """``run`` and ``rebuild gold``: three messages whose counts are the ledger's and gold's."""
    assert too_wide(text) == [], text
    silver, gold, verdict = messages(text)
    run = latest_run(home)
    c = run["stages"]["silver"]
    assert silver.startswith(
        f"silver: read {c['rows_read']:,} rows → {c['rows_valid']:,} valid, {c['rows_quarantined']:,} quarantined, "
        f"{c['rows_duplicate']:,} duplicate"
    ), text
    assert dict(re.findall(r"(\w+) (\d+(?:,\d{3})*)", gold.removeprefix("gold: "))) == {
        k: f"{v:,}" for k, v in gold_counts(home).items()
    }, text
    assert verdict == f"run {run['run_id']}: succeeded — gold published", text


def test_csv_commands_fold_and_keep_paths_and_counts_whole(tmp_path):
    out_dir = tmp_path / "regional exports" / "daily"  # a space: a path must not break there either
    home = tmp_path / "lake"
    made = cli("generate", "csv", "--out", str(out_dir), "--rows", "2000", "--seed", "9", home=home)
    expected = api.generate_csv(tmp_path / "again", rows=2000, seed=9)  # same seed, same files
    assert too_wide(made.stdout, [str(out_dir)]) == [], made.stdout
    assert any(str(out_dir) in text_line for text_line in made.stdout.splitlines()), made.stdout  # never cut
    assert messages(made.stdout) == [
        f"wrote {expected.rows_written:,} rows in {expected.files:,} files under {out_dir} "
        f"({expected.defective_rows:,} defective, {expected.exact_duplicates:,} duplicates, "
        f"{expected.corrections:,} corrections)"
    ], made.stdout

    landed = cli("ingest", "csv", str(out_dir), home=home)
    assert too_wide(landed.stdout + landed.stderr) == [] and landed.stderr == "", landed.stdout + landed.stderr
    [said] = messages(landed.stdout)
    assert said.startswith(f"landed {expected.files:,} file(s) (") and said.endswith("; 0 already landed"), said

    assert_run_summary(cli("run", home=home).stdout, home)
    assert_run_summary(cli("rebuild", "gold", home=home).stdout, home)


def service_summaries(text: str) -> dict[str, dict[str, str]]:
    """``services`` output: per service the `key=value`s of its summary, a shell comment
    (``# name: k=v, k=v,`` then ``#   k=v, ...``)."""
    summaries: dict[str, dict[str, str]] = {}
    name = ""
    for text_line in text.splitlines():
        if text_line.startswith("#   "):
            pairs = text_line[4:]
        elif text_line.startswith("# "):
            name, _, pairs = text_line[2:].partition(": ")
            summaries[name] = {}
        else:
            continue
        for pair in filter(None, (p.strip() for p in pairs.split(","))):
            key, _, value = pair.partition("=")
            summaries[name][key] = value
    return summaries


def expected_output(info: dict) -> tuple[dict[str, str], list[str]]:
    """What ``services`` shows of one service's api result: its values, and the export lines."""
    shown = {k: str(v) for k, v in info.items() if v is not None and not isinstance(v, dict)}
    exports = [
        f"  export {k}={shlex.quote(str(v))}" for d in info.values() if isinstance(d, dict) for k, v in d.items()
    ]
    return shown, exports


def test_services_summaries_fold_and_the_output_can_be_evaluated(tmp_path, postgres_service):
    # nothing runs for this lake: each summary still names its DSNs and paths
    idle = tmp_path / "idle"
    text = cli("services", "status", home=idle).stdout
    assert too_wide(text) == [], text
    summaries = service_summaries(text)
    for name, info in api.services("status", settings=api.settings(home=idle)).items():
        shown, exports = expected_output(info)
        assert summaries[name] == shown, text
        assert [t for t in text.splitlines() if t.strip().startswith(f"export SALESLAKE_{name.upper()}")] == [
            e for e in exports if e.startswith(f"  export SALESLAKE_{name.upper()}")
        ], text
    assert summaries["postgres"]["running"] == "False" and summaries["kafka"]["running"] == "False"

    # the session's running PostgreSQL: its pid, port and DSNs whole, the exports unchanged
    env = {
        "SALESLAKE_POSTGRES__SERVICE_HOME": str(postgres_service.home),
        "SALESLAKE_POSTGRES__PORT": str(postgres_service.port),
    }
    settings = api.settings(home=idle, postgres={"service_home": postgres_service.home, "port": postgres_service.port})
    for action in ("start", "status"):
        text = cli("services", action, "postgres", home=idle, env=env).stdout
        assert too_wide(text) == [], text
        shown, exports = expected_output(api.services(action, ["postgres"], settings)["postgres"])
        assert service_summaries(text) == {"postgres": shown} and shown["running"] == "True", text
        assert [t for t in text.splitlines() if not t.startswith("#")] == exports, text

    # eval "$(saleslake services start s3)" sets the variables, nothing else runs
    lake = tmp_path / "s3 lake"
    saleslake_cmd = " ".join(map(shlex.quote, [*CLI, "services", "start", "s3", "--home", str(lake)]))
    script = f'set -eu\nout=$({saleslake_cmd})\nprintf "%s\\n" "$out"\neval "$out"\nprintf "ENDPOINT %s\\n" "$SALESLAKE_STORAGE__ENDPOINT_URL"\n'
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("SALESLAKE_", "AWS_"))} | {"COLUMNS": "80"}
    try:
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=environment, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        info = api.services("status", ["s3"], api.settings(home=lake))["s3"]
        shown, exports = expected_output(info)
        started, _, endpoint = done.stdout.rpartition("ENDPOINT ")
        assert endpoint.strip() == info["endpoint"] and too_wide(started, [str(lake)]) == [], done.stdout
        assert service_summaries(started) == {"s3": shown} and shown["running"] == "True", started
        assert [t for t in started.splitlines() if not t.startswith("#")] == exports, started
    finally:
        stopped = cli("services", "stop", "s3", home=lake)
    assert stopped.stdout == "# s3: running=False\n"


def postgres_env(s) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.startswith("SALESLAKE_POSTGRES") and k.endswith("_FILE")}
    return env | {
        "SALESLAKE_POSTGRES__PORT": str(s.postgres.port),
        "SALESLAKE_POSTGRES__DATABASE": s.postgres.database,
        "SALESLAKE_POSTGRES__WAREHOUSE_DATABASE": s.postgres.warehouse_database,
    }


def named_counts(counts: dict[str, int]) -> list[str]:
    return [f"{v:,} {k.replace('_', ' ')}" for k, v in counts.items()]


def test_postgres_commands_fold_their_summaries(postgres_settings):
    s, home = postgres_settings, postgres_settings.home
    env = postgres_env(s)
    filled = cli("generate", "oltp", "--orders", "300", home=home, env=env).stdout
    shop = api.generate_oltp(orders=300, settings=s)  # the same shop: unchanged, with its counts
    assert shop.action == "unchanged" and too_wide(filled) == [], filled
    fill, now = messages(filled)
    assert fill.startswith(f"filled {shop.dsn} (seed 42): ") and now.startswith("now: "), filled
    assert all(count in fill and count in now for count in named_counts(shop.tables)), filled

    same = cli("generate", "oltp", "--orders", "300", home=home, env=env).stdout
    assert too_wide(same) == [] and messages(same)[0] == (
        f"{shop.dsn} already holds this shop (seed 42, 300 orders, 0 mutation round(s)): nothing changed; "
        "use --mutate or --replace"
    ), same
    mutated = cli("generate", "oltp", "--mutate", home=home, env=env).stdout
    assert too_wide(mutated) == [], mutated
    changes, shared, now = messages(mutated)
    assert changes.startswith("mutation round 1: ") and " changed rows share updated_at " in shared, mutated

    extracted = cli("ingest", "postgres", home=home, env=env).stdout
    assert too_wide(extracted) == [], extracted
    extract, silver = messages(extracted)
    run = latest_run(home)
    assert extract.startswith("extract 0: ") and f"({run['stages']['bronze']['rows_read']:,} rows read in " in extract
    c = run["stages"]["silver"]
    assert silver.startswith(f"silver: {c['rows_valid']:,} lines valid, {c['rows_quarantined']:,} quarantined, ")

    cli("run", home=home, env=env)
    published = cli("publish", "postgres", home=home, env=env).stdout
    assert too_wide(published) == [], published
    heading = next(text for text in messages(published) if text.startswith("published "))
    found = re.fullmatch(r"published gold release (\w+) to (\S+) schema gold in [\d.]+ s", heading)
    assert (
        found
        and found[2] == f"postgresql://saleslake_warehouse@127.0.0.1:{s.postgres.port}/{s.postgres.warehouse_database}"
    )
    rows = {
        cells[0]: cells[1:] for cells in map(str.split, published.splitlines()) if cells and cells[0] in GOLD_TABLES
    }
    assert {name: cells[0] for name, cells in rows.items()} == {k: f"{v:,}" for k, v in gold_counts(home).items()}
    assert all(cells[0] == cells[1] and cells[2] == "0" for cells in rows.values()), published  # all new

    again = cli("publish", "postgres", home=home, env=env).stdout
    assert too_wide(again) == [] and messages(again) == [
        f"{found[2]} schema gold already holds gold release {found[1]}: nothing changed"
    ], again


def test_stream_commands_fold_their_summaries(stream_settings):
    s, home = stream_settings, stream_settings.home
    env = {
        "SALESLAKE_KAFKA__BOOTSTRAP_SERVERS": s.kafka.bootstrap_servers,
        "SALESLAKE_KAFKA__TOPIC": s.kafka.topic,
        "SALESLAKE_KAFKA__GROUP_ID": s.kafka.group_id,
    }
    shown = cli("produce", "--events", "300", "--seed", "3", home=home, env=env).stdout
    twin = env | {"SALESLAKE_KAFKA__TOPIC": s.kafka.topic + ".twin"}  # the same seed: the same events
    summary = json.loads(cli("produce", "--events", "300", "--seed", "3", "--json", home=home, env=twin).stdout)
    assert too_wide(shown) == [], shown
    sent, malformed, lines, expected, fraud, *_ = messages(shown)
    assert sent.startswith(f"sent {summary['events']:,} events (seed 3) to {s.kafka.topic} ({summary['partitions']} ")
    assert f"delivered {summary['delivered']:,}, delivery errors {summary['delivery_errors']:,}" in sent, shown
    assert malformed.startswith(f"malformed messages: {summary['malformed_messages']:,}"), shown
    assert lines.startswith(
        f"lines in well-formed messages: {summary['lines']:,} → {summary['valid_lines']:,} valid "
        f"(gross sales {summary['valid_sales']}), {summary['defective_lines']:,} defective"
    ), shown
    assert expected == (
        f"expected: silver {summary['valid_lines']:,} lines, quarantine {summary['expected_quarantine_rows']:,} rows"
    )
    assert fraud.startswith(f"fraud patterns: {summary['fraud_events']:,} events"), shown

    streamed = cli("stream", "--until-idle", home=home, env=env).stdout
    assert too_wide(streamed) == [], streamed
    [said] = messages(streamed)
    run = latest_run(home)
    c = run["stages"]["silver"]
    assert said.startswith(f"stream {run['run_id']}: {summary['events']:,} records in "), streamed
    assert (
        f"→ {c['rows_valid']:,} lines valid, {c['rows_quarantined']:,} quarantined, {c['rows_duplicate']:,} duplicate; "
        "lag 0; gold refreshed 0×"
    ) in said, streamed
    assert c["rows_valid"] == summary["valid_lines"]


def test_doctor_folds_each_check(tmp_path):
    closed = free_port()
    env = {"SALESLAKE_POSTGRES__PORT": str(closed), "SALESLAKE_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{closed}"}
    shown = cli("doctor", "--skip-dbt", home=tmp_path / "lake", env=env).stdout
    checks = json.loads(cli("doctor", "--skip-dbt", "--json", home=tmp_path / "lake", env=env).stdout)
    assert too_wide(shown) == [], shown
    said = messages(shown)
    assert len(said) == len(checks), shown  # one message per check
    for text, check in zip(said, checks, strict=True):
        words = text.split()
        assert words[0] == check["state"], text
        expected = f"{check['name']} {check['detail']}" + (
            f" — fix: {check['hint']}" if check["hint"] and not check["ok"] else ""
        )
        # the free disk space may change between the two runs (other processes write)
        got, wanted = (
            re.sub(r"[\d.]+ \w+ free", "N free", " ".join(s.split())) for s in (" ".join(words[1:]), expected)
        )
        assert got == wanted, text


def test_frequent_errors_are_one_line_each_with_their_values_whole(tmp_path):
    home = tmp_path / "lake"
    folder = tmp_path / "exports from the regional ERP"
    missing = write_csv(folder / "missing_columns.csv", "Region,Country\nX,Y\n")
    header_only = write_csv(folder / "header_only.csv", HEADER + "\n")
    write_csv(folder / "good.csv", HEADER + "\n" + line() + "\n")
    errors = {
        "ingest": (cli("ingest", "csv", str(folder), home=home, ok=False), [str(missing)]),
        "setting": (
            cli("run", home=home, env={"SALESLAKE_QUALITY__MAX_QUARANTINE_SHARE": "many"}, ok=False),
            ["quality.max_quarantine_share", "SALESLAKE_QUALITY__MAX_QUARANTINE_SHARE"],
        ),
        "dsn": (
            cli("generate", "oltp", "--dsn", "postgresql://saleslake:secret@127.0.0.1:5999/shop", home=home, ok=False),
            ["SALESLAKE_POSTGRES_PASSWORD_FILE"],
        ),
        "files": (
            cli("query", "SELECT * FROM read_csv('/etc/passwd')", home=home, ok=False),
            ["/etc/passwd", "--allow-files"],
        ),
        "port": (
            cli("services", "start", "--port", "5999", home=home, ok=False),
            ["'saleslake services start postgres --port 5433'"],
        ),
    }
    for what, (done, values) in errors.items():
        said = done.stderr.splitlines()  # an error is one line, never wrapped (CONTRACT §1)
        assert done.returncode == 1 and said[0].startswith("error: "), (what, done.stderr)
        for value in values:  # each whole in that line
            assert value in said[0], (what, value, done.stderr)
        if what != "ingest":
            assert len(said) == 1, (what, done.stderr)
    said = errors["ingest"][0].stderr.splitlines()
    assert said[0].startswith(f"error: {missing}:1: missing required column(s): Row ID, Order ID, "), said
    assert said[1:] == [f"skipped: {header_only}: header only, no data rows"], said
    assert max(len(text) for text in said) > 80  # longer than the terminal, still one line


def test_stream_without_a_broker_says_so_in_one_message(tmp_path):
    env = {
        "SALESLAKE_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "SALESLAKE_STREAM__CONNECT_ATTEMPTS": "2",
    }
    done = cli("stream", "--until-idle", home=tmp_path / "lake", env=env, ok=False)
    [said] = done.stderr.splitlines()  # one line: no librdkafka log lines, no wrapping
    assert done.returncode == 4, done.stderr
    assert said.startswith("error: no Kafka broker answered at ") and "saleslake services start kafka" in said
