"""The command line's last resort: a bug is one line naming the file that holds its
traceback (exit 3), or the traceback itself with SALESLAKE_DEBUG=1; a full disk is one
line (exit 1); CSV output writes list columns as JSON; a progress bar covers only the
step it counts, fits 80 columns, and is not drawn when output goes to a pipe."""

from __future__ import annotations

import csv
import errno
import io
import json
import re

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from saleslake import api, cli


def _boom(*_args, **_kwargs):
    raise RuntimeError("boom: an unexpected state\nsecond line")


def test_a_bug_is_one_line_with_its_traceback_in_a_file(settings, monkeypatch: pytest.MonkeyPatch):
    settings.home.mkdir(parents=True)
    monkeypatch.setattr(api, "status", _boom)
    outcome = CliRunner().invoke(cli.app, ["status", "--home", str(settings.home)])
    assert outcome.exit_code == 3
    lines = [t for t in outcome.stderr.splitlines() if t.strip()]
    assert len(lines) == 1 and "unexpected RuntimeError in 'status': boom: an unexpected state" in lines[0], lines
    [log] = (settings.home / "logs").glob("saleslake-error-*.log")
    assert str(log) in lines[0]
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "_boom" in text and "second line" in text


def test_saleslake_debug_shows_the_traceback(settings, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(api, "status", _boom)
    monkeypatch.setenv("SALESLAKE_DEBUG", "1")
    outcome = CliRunner().invoke(cli.app, ["status", "--home", str(settings.home)])
    assert isinstance(outcome.exception, RuntimeError) and outcome.exit_code == 1


def test_a_full_disk_is_one_line_and_a_user_error(settings, monkeypatch: pytest.MonkeyPatch):
    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(api, "status", full)
    outcome = CliRunner().invoke(cli.app, ["status", "--home", str(settings.home)])
    assert outcome.exit_code == 1
    lines = [t for t in outcome.stderr.splitlines() if t.strip()]
    assert len(lines) == 1 and "no space left on device" in lines[0] and "free disk space" in lines[0], lines


def test_csv_output_writes_nested_columns_as_json(capsys: pytest.CaptureFixture[str]):
    table = pa.table(
        {
            "reasons": pa.array([["invalid_date:order_date", "negative_quantity"], None], pa.list_(pa.string())),
            "detail": pa.array([{"a": 1}, {"a": None}]),
            "n": [1, 2],
        }
    )
    cli.print_table(table, cli.Format.csv)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == '"reasons","detail","n"'
    first, second = list(csv.reader(lines[1:]))
    assert json.loads(first[0]) == ["invalid_date:order_date", "negative_quantity"] and first[2] == "1"
    assert second[0] == "" and json.loads(second[1]) == {"a": None}


def test_a_long_list_of_extra_columns_is_shortened():
    from saleslake.cli import _some

    assert _some(tuple(f"c{i}" for i in range(100_000))) == "c0, c1, c2, c3, c4 and 99,995 more"
    assert _some(("Sales Rep",)) == "Sales Rep"


def _consoles(monkeypatch: pytest.MonkeyPatch, stdout_terminal: bool) -> io.StringIO:
    """cli's stdout and stderr consoles as an 80-column terminal (stdout: or a pipe);
    returns what stderr received."""
    from rich.console import Console

    seen = io.StringIO()
    monkeypatch.setattr(cli, "err", Console(file=seen, force_terminal=True, width=80))
    monkeypatch.setattr(cli, "out", Console(file=io.StringIO(), force_terminal=stdout_terminal, width=80))
    return seen


def test_a_counting_bar_ends_with_the_step_it_counts(monkeypatch: pytest.MonkeyPatch):
    """The demo's bar counts the sample rows generated: once they are all there it is gone,
    while the demo goes on landing and processing them (it stayed, frozen at 100 %)."""
    seen = _consoles(monkeypatch, stdout_terminal=True)
    with cli._counting("generating sample exports", 100_000) as advance:
        advance(40_000)
        assert "generating sample exports" in seen.getvalue()  # a bar on a terminal
        advance(60_000)
        cli.err.print("next step")  # what the demo writes next while the command goes on
    after = seen.getvalue().rsplit("next step", 1)[1]
    assert "generating sample exports" not in after, after  # not drawn again below it
    drawn = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen.getvalue()).replace("\r", "\n")
    assert "100000/100000" in drawn and max(len(line) for line in drawn.splitlines()) <= 80


def test_no_bar_when_stdout_is_a_pipe(monkeypatch: pytest.MonkeyPatch):
    seen = _consoles(monkeypatch, stdout_terminal=False)
    with cli._counting("generating sample exports", 10) as advance:
        advance(10)
    assert seen.getvalue() == ""
