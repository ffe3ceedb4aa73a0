"""The crash point switch: off it does nothing; armed, the process dies by SIGKILL at
exactly the n-th pass of the named point; the registry names exactly the points in the code."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import saleslake
from saleslake.crashpoints import CRASH_AT_ENV, CRASH_LOG_ENV, DBT_POINTS, POINTS, parse_crash_at

PACKAGE = Path(saleslake.__file__).parent
LOOP = (
    "from saleslake.crashpoints import crash_point\n"
    "for i in range(5):\n"
    "    crash_point('run.after_silver')\n"
    "    print(i, flush=True)\n"
)


def run_loop(tmp_path: Path, **switch: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALESLAKE_")} | switch
    return subprocess.run([sys.executable, "-c", LOOP], env=env, capture_output=True, text=True, cwd=tmp_path)


def names_in_code() -> set[str]:
    """Every literal crash_point("...") call in the package."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "crash_point":
                (arg,) = node.args
                if isinstance(arg, ast.Constant):
                    found.add(str(arg.value))
                else:  # the one dynamic call: the dbt callback, over DBT_POINTS
                    assert path.name == "crashpoints.py", f"{path}: crash_point takes a literal name"
    return found


def test_registry_names_exactly_the_points_in_the_code():
    assert names_in_code() | set(DBT_POINTS.values()) == set(POINTS)
    assert len(POINTS) >= 20


def test_off_it_does_nothing(tmp_path: Path):
    done = run_loop(tmp_path)
    assert done.returncode == 0 and done.stdout.split() == ["0", "1", "2", "3", "4"]


def test_armed_the_process_dies_by_sigkill_at_the_nth_pass(tmp_path: Path):
    log = tmp_path / "passes.log"
    done = run_loop(tmp_path, **{CRASH_AT_ENV: "run.after_silver:3", CRASH_LOG_ENV: str(log)})
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.split() == ["0", "1"]  # died in the third pass, before printing 2
    assert log.read_text().splitlines() == ["run.after_silver\t1", "run.after_silver\t2", "run.after_silver\t3"]


def test_recording_alone_never_kills(tmp_path: Path):
    log = tmp_path / "passes.log"
    done = run_loop(tmp_path, **{CRASH_LOG_ENV: str(log)})
    assert done.returncode == 0 and len(log.read_text().splitlines()) == 5


@pytest.mark.parametrize("value", ["run.after_silver", "run.after_silver:0", "run.after_silver:x", "no.such:1"])
def test_a_bad_switch_fails_loudly(value: str, tmp_path: Path):
    with pytest.raises(ValueError, match=CRASH_AT_ENV):
        parse_crash_at(value)
    done = run_loop(tmp_path, **{CRASH_AT_ENV: value})
    assert done.returncode == 1 and CRASH_AT_ENV in done.stderr


def test_parse():
    assert parse_crash_at("gold.publish.after_table:6") == ("gold.publish.after_table", 6)


def test_the_testing_page_lists_every_point_under_the_command_killed_there():
    page = (PACKAGE.parents[1] / "docs" / "testing.md").read_text(encoding="utf-8")
    section = page[page.index("**Crash points.**") : page.index("The switch is **for tests only**")]
    listed = {}
    for item in section.split("\n- ")[1:]:
        command, names = item.split(":", 1)
        for name in names.replace("`", " ").replace(",", " ").split():
            listed[name] = command.strip("` ")
    assert listed == {name: point.commands[0] for name, point in POINTS.items()}
