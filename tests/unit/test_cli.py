"""The command line's last resort: a bug is one line naming the file that holds its
traceback (exit 3), or the traceback itself with SALESLAKE_DEBUG=1; a full disk is one
line (exit 1); a user error is one line whatever its length (never wrapped at the
terminal's width, which only summaries are); CSV output writes list columns as JSON; a
progress bar covers only the step it counts, fits 80 columns, and is not drawn when output
goes to a pipe."""

from __future__ import annotations

import csv
import errno
import io
import json
import re

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from helpers import ledger_counts, printed_counts
from saleslake import api, cli
from saleslake.errors import InputFileError, UserError


def _boom(*_args, **_kwargs):
    raise RuntimeError("boom: an unexpected state\nsecond line")


def test_a_bug_is_one_line_with_its_traceback_in_a_file(settings, monkeypatch: pytest.MonkeyPatch):
    settings.home.mkdir(parents=True)
    monkeypatch.setattr(api, "status", _boom)
    outcome = CliRunner().invoke(cli.app, ["status", "--home", str(settings.home)])
    assert outcome.exit_code == 3
    lines = outcome.stderr.splitlines()
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
    lines = outcome.stderr.splitlines()
    assert len(lines) == 1 and "no space left on device" in lines[0] and "free disk space" in lines[0], lines


@pytest.mark.parametrize("columns", [80, 40])
def test_a_user_error_is_one_line_whatever_its_length(settings, monkeypatch: pytest.MonkeyPatch, columns: int):
    path = "/srv/regional exports/" + "daily/" * 12 + "day.csv"  # spaces, and longer than the line
    bad_file = InputFileError(
        path, "missing required column(s): Row ID, Order ID, Order Date, Ship Date", "export all 24 fields", line=1
    )
    driver = UserError("cannot reach PostgreSQL at 127.0.0.1:5999: refused\n\tIs the server running on that host?")
    monkeypatch.setattr(cli.err, "width", columns)  # the terminal's width (rich read COLUMNS at import)
    for error, said in (
        (bad_file, f"error: {bad_file}"),
        (driver, "error: cannot reach PostgreSQL at 127.0.0.1:5999: refused Is the server running on that host?"),
    ):

        def fail(*_args, error=error, **_kwargs):
            raise error

        monkeypatch.setattr(api, "status", fail)
        outcome = CliRunner().invoke(cli.app, ["status", "--home", str(settings.home)])
        assert outcome.exit_code == 1
        assert outcome.stderr.splitlines() == [said]  # one line, whole: a pipe's grep gets all of it
        assert len(said) > 80


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


def said(text, width: int = 40, **options) -> list[str]:
    """What :func:`cli._say` prints on a terminal ``width`` columns wide."""
    import io

    from rich.console import Console

    sink = io.StringIO()
    cli._say(text, Console(file=sink, width=width, color_system=None), **options)
    return sink.getvalue().splitlines()


def test_a_message_wraps_at_spaces_and_keeps_numbers_paths_and_commands_whole():
    path = "/srv/exports/" + "regional/" * 6 + "day.csv"  # longer than the line: a line of its own
    lines = said(f"wrote: {path}:1: missing column(s) in 12,345 rows; run 'saleslake ingest csv --reparse' now")
    assert lines == [
        "wrote:",
        f"  {path}:1:",
        "  missing column(s) in 12,345 rows; run",
        "  'saleslake ingest csv --reparse' now",
    ]
    # a path with a space, named in whole=, does not break there; a number keeps its word
    spaced = "/tmp/My Exports/day.csv"
    assert said(f"landed: {spaced}: header only, then 1,000 rows", width=30, whole=[spaced]) == [
        "landed:",
        f"  {spaced}:",
        "  header only, then 1,000 rows",
    ]
    assert said("gold: fact_sales 3,000, dim_customer 96 (0.3 s)", width=28) == [
        "gold: fact_sales 3,000,",
        "  dim_customer 96 (0.3 s)",
    ]
    assert said("# s3: running=True, pid=42, home=/a/b", width=24, indent="#   ") == [
        "# s3: running=True,",
        "#   pid=42, home=/a/b",
    ]
    assert said("short", width=80) == ["short"] and said("", width=80) == [""]


def test_a_wrapped_message_keeps_its_styles():
    from rich.text import Text

    text = cli._labelled("stream:", "bold", "the lake is busy: run 1234 holds it")
    lines = cli._wrapped(text, 20, "  ")
    assert [line.plain for line in lines] == ["stream: the lake is", "  busy: run 1234", "  holds it"]
    assert [(s.start, s.end, str(s.style)) for s in lines[0].spans] == [(0, 7, "bold")]
    assert all(not line.spans for line in lines[1:]) and isinstance(lines[0], Text)


@pytest.mark.parametrize("width", [80, 60, 40])
@pytest.mark.parametrize("rows", [3_000, 20_000_000, 20_000_000_000_000])
def test_status_fits_and_prints_every_count_whole(settings, monkeypatch: pytest.MonkeyPatch, width: int, rows: int):
    stages = {
        "bronze": {"rows_read": rows, "rows_valid": rows, "rows_quarantined": 0, "rows_duplicate": None},
        "silver": {"rows_read": rows, "rows_valid": rows - 27, "rows_quarantined": 20, "rows_duplicate": 7},
        "gold": {"rows_read": rows - 27, "rows_valid": rows - 27, "rows_quarantined": 0, "rows_duplicate": 0},
    }
    run_id = "20261207T220000Z-0a1b2c"  # as runs.new_run_id makes them; the heading is longer than 40 columns
    ledger = {"run_id": run_id, "command": "run", "status": "succeeded", "started_at": "2026-12-07T22:00:00"}
    monkeypatch.setattr(api, "status", lambda *_args: [ledger | {"stages": stages, "error": None}])
    monkeypatch.setattr(api, "freshness", lambda *_args: [])
    monkeypatch.setattr(cli.out, "width", width)
    outcome = CliRunner().invoke(cli.app, ["status", "--home", str(settings.home)])
    assert outcome.exit_code == 0, outcome.output
    text = outcome.stdout
    assert max(len(text_line) for text_line in text.splitlines()) <= width and "…" not in text, text
    assert any(run_id in text_line for text_line in text.splitlines()), text  # the id whole on one line
    assert printed_counts(text, stages) == ledger_counts(stages), text
