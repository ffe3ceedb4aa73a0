"""The ``saleslake`` command line: a thin layer over :mod:`saleslake.api`.

Exit codes (CONTRACT §1): 0 success, 1 user error (one line, no traceback; a full disk
too), 2 usage, 3 pipeline failure (quality gate, failed gold tests; an unexpected error,
whose traceback goes to a file, see :func:`guarded`), 4 transient failure.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import signal
import sys
import textwrap
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

import pyarrow as pa
import typer
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text
from typer.exceptions import TyperException

from saleslake import api
from saleslake.errors import SaleslakeError, UserError, storage_exhausted

app = typer.Typer(
    help="saleslake: a sales data lakehouse in a box (CSV, PostgreSQL, Kafka → Delta bronze/silver/gold → star schema).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
generate_app = typer.Typer(help="Generate realistic sample sources.", no_args_is_help=True)
ingest_app = typer.Typer(help="Land source data in bronze.", no_args_is_help=True)
rebuild_app = typer.Typer(help="Rebuild a layer from the one below.", no_args_is_help=True)
services_app = typer.Typer(help="Local development services on 127.0.0.1, installed when absent.", no_args_is_help=True)
app.add_typer(generate_app, name="generate")
app.add_typer(ingest_app, name="ingest")
app.add_typer(rebuild_app, name="rebuild")
app.add_typer(services_app, name="services")
publish_app = typer.Typer(help="Publish gold to a serving target.", no_args_is_help=True)
app.add_typer(publish_app, name="publish")

out = Console()
err = Console(stderr=True)

# a string, not a Path: a Path would fold ``s3://bucket/prefix`` into ``s3:/bucket/prefix``
Home = Annotated[
    str | None,
    typer.Option(
        "--home",
        help="Lake: a folder or s3://bucket/prefix (env SALESLAKE_HOME, default ./lakehouse).",
        show_default=False,
    ),
]


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


#: Set (to anything but 0) to see the traceback of an unexpected error on stderr.
DEBUG_ENV = "SALESLAKE_DEBUG"
#: An unexpected error (a bug): exit code of a pipeline failure.
UNEXPECTED_EXIT = 3


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn every failure into one line on stderr and the contract's exit code: saleslake
    errors with their own code; a write that found no room (disk full, quota, ``ulimit
    -f``) as a user error (1: the user must make room; a retry alone would fail again);
    anything else is a bug: one line naming the file that holds its traceback (exit 3),
    or the traceback itself with ``SALESLAKE_DEBUG=1``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SaleslakeError as exc:
            # a stage's own report of a full disk (dbt: "gold models failed: ... No space left on device")
            full = None if isinstance(exc, UserError) else storage_exhausted(exc)
            if full is not None:
                _fail(full.message(_written_folder(kwargs)), 1)
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, TyperException):  # exit codes and usage errors (2) of their own
            raise
        except Exception as exc:
            full = storage_exhausted(exc)
            if full is not None:
                _fail(full.message(_written_folder(kwargs)), 1)
            if os.environ.get(DEBUG_ENV, "0") not in ("", "0"):
                raise
            _fail(_unexpected(fn.__name__, exc, _lake_home(kwargs.get("home"))), UNEXPECTED_EXIT)

    return wrapper


#: Stands for a space at which a line must not break (inside a path, a DSN, a count and
#: its noun); a private-use character, printed as the space it stands for.
_KEEP = "\ue000"


#: A number and the short word after it ("3,000 rows", "0.3 s"): a line does not break between them.
_NUMBER_AND_WORD = re.compile(r"(?<![\w.,])(\d+(?:[.,]\d+)*) (?=\S{1,20}(?:\s|$))")
#: A command to copy, quoted or in parentheses ('saleslake services stop s3'): one line.
_COMMAND = re.compile(r"(['`(])saleslake [^'`()\n]{1,60}?['`)]")


def _whole(value: object) -> str:
    """``value`` as one word for :func:`_say`: no line breaks inside it."""
    return str(value).replace(" ", _KEEP)


def _say(text: str | Text, console: Console = out, indent: str = "  ", whole: Iterable[str] = ()) -> None:
    """Print a message (plain text, or a styled :class:`Text`; no markup, no colouring of
    numbers) wrapped at spaces to the terminal's width (80 in a pipe), its continuation
    lines indented by ``indent``: no line runs past the edge, and none breaks inside a
    number, an id or a path (a word longer than the line gets a line of its own, whole,
    so it can be copied). ``whole``: values in ``text`` that hold spaces (a path) and
    must not break at them either."""
    styled = Text(text) if isinstance(text, str) else text.copy()
    styled.plain = _glued(styled.plain, whole)  # same length: the styles stay
    for line in _wrapped(styled, console.width, indent):
        console.print(line, highlight=False, soft_wrap=True)


def _glued(plain: str, whole: Iterable[str] = ()) -> str:
    """``plain`` with the spaces a line must not break at marked: inside ``whole``'s
    values, between a number and its word, inside a quoted ``saleslake …`` command."""
    for value in whole:
        if value:
            plain = plain.replace(value, _whole(value))
    plain = _COMMAND.sub(lambda m: _whole(m[0]), plain)
    return _NUMBER_AND_WORD.sub(lambda m: m[1] + _KEEP, plain)


def _wrapped(text: Text, width: int, indent: str) -> list[Text]:
    """``text`` in lines of at most ``width`` columns, broken at spaces only (textwrap,
    never inside a word), the continuation lines indented; each line keeps the styles of
    its characters."""
    lines: list[Text] = []
    for paragraph in text.split("\n", allow_blank=True):
        plain, start = paragraph.plain, 0
        pieces = textwrap.wrap(
            plain,
            width,
            subsequent_indent=indent,
            break_long_words=False,
            break_on_hyphens=False,
            expand_tabs=False,
            replace_whitespace=False,
        )
        for number, piece in enumerate(pieces or [""]):
            body = piece[len(indent) :] if number else piece
            at = plain.find(body, start)  # textwrap only drops the spaces where it breaks
            start = at + len(body)
            line = paragraph[at:start]
            line.plain = line.plain.replace(_KEEP, " ")
            lines.append(Text(indent) + line if number else line)
    return lines


def _labelled(label: str, style: str, message: str) -> Text:
    """``label message`` with the label styled (``error:`` in red)."""
    return Text.assemble((label, style), " ", message)


def _named_counts(counts: dict[str, int]) -> str:
    """``{"order_lines": 1200}`` as ``1,200 order lines``, comma-separated (each count
    stays on one line with its noun)."""
    return ", ".join(_whole(f"{v:,} {k.replace('_', ' ')}") for k, v in counts.items())


def _fail(message: str, code: int) -> NoReturn:
    _report("error:", "bold red", message)
    raise typer.Exit(code) from None


def _report(label: str, style: str, message: str) -> None:
    """An error or a note on stderr as ONE line (CONTRACT §1), never wrapped at the
    terminal's width, whatever its length: `2>&1 | grep` finds all of it, and a script
    reads one message per line. A message with line breaks of its own (a driver's second
    line) is joined into that line."""
    joined = " ".join(part.strip() for part in message.splitlines() if part.strip())
    err.print(_labelled(label, style, joined), highlight=False, soft_wrap=True)


def _some(names: tuple[str, ...], shown: int = 5) -> str:
    """The first ``shown`` names, then how many more (a header may hold 100,000 columns)."""
    more = f" and {len(names) - shown:,} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _written_folder(options: dict[str, Any]) -> Path | None:
    """Where a command writes, for a full-disk message that has no file name: the output
    folder of ``generate csv``, else the lake."""
    out_dir = options.get("out_dir")
    return Path(out_dir).absolute() if out_dir else _lake_home(options.get("home"))


def _lake_home(home: str | None) -> Path | None:
    try:
        resolved = api.settings(home=home).home
    except Exception:
        return None if home is None or "://" in home else Path(home)
    return resolved.absolute() if isinstance(resolved, Path) else None  # a bucket: no local folder


def _unexpected(command: str, exc: Exception, home: Path | None) -> str:
    """The line for an unexpected error; its traceback goes to a file (under the lake's
    ``logs/`` when the lake exists, else the temporary folder), or, when no file can be
    written, to stderr after the line: never lost."""
    import tempfile
    import traceback

    summary = f"unexpected {type(exc).__name__} in '{command}': {(str(exc).strip().splitlines() or [''])[0]}"
    text = "".join(traceback.format_exception(exc))
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    folders = ([home / "logs"] if home is not None and home.is_dir() else []) + [Path(tempfile.gettempdir())]
    for folder in folders:
        try:
            folder.mkdir(exist_ok=True)
            log = folder / f"saleslake-error-{stamp}-{os.getpid()}.log"
            log.write_text(f"saleslake {command} failed at {datetime.now().isoformat()}\n{text}")
        except OSError:
            continue
        return f"{summary} (a bug: the traceback is in {log}; {DEBUG_ENV}=1 prints it here)"
    err.print(text, highlight=False, markup=False)
    return f"{summary} (a bug: traceback above)"


def _settings(home: str | None, **overrides: Any):
    return api.settings(home=home, **overrides)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def print_table(table: pa.Table, fmt: Format, title: str | None = None) -> None:
    if fmt is Format.json:
        sys.stdout.write(json.dumps(table.to_pylist(), default=_json_default, indent=2) + "\n")
        return
    if fmt is Format.csv:
        import pyarrow.csv as pacsv

        sink = pa.BufferOutputStream()
        pacsv.write_csv(_csv_ready(table), sink)
        sys.stdout.write(sink.getvalue().to_pybytes().decode())
        return
    rows = [["" if v is None else str(v) for v in row.values()] for row in table.to_pylist()]
    if _natural_width(table.column_names, rows) > out.width:
        _print_records(table.column_names, rows, title)
        return
    view = Table(title=title, show_lines=False)
    for field in table.schema:
        if _is_number(field.type):  # a number is never cut nor broken
            view.add_column(field.name, justify="right", no_wrap=True)
        else:
            view.add_column(field.name, overflow="fold")
    for cells in rows:
        view.add_row(*cells)
    out.print(view)


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_decimal(kind) or pa.types.is_floating(kind)


def _natural_width(names: list[str], rows: list[list[str]]) -> int:
    """The width of the table with every cell on one line (3 per column for the box)."""
    widest = [max([len(name)] + [len(r[i]) for r in rows]) for i, name in enumerate(names)]
    return sum(widest) + 3 * len(names) + 1


def _print_records(names: list[str], rows: list[list[str]], title: str | None) -> None:
    """Rows too wide for the terminal, one block each (psql's expanded display): a name
    per line and its value folded beside it, so nothing is cut."""
    for number, cells in enumerate(rows, 1):
        out.print(f"[bold]── {title or 'row'} {number} ──[/]", highlight=False)
        block = Table.grid(padding=(0, 2))
        block.add_column(no_wrap=True)
        block.add_column(overflow="fold")
        for name, cell in zip(names, cells, strict=True):
            block.add_row(name, cell)
        out.print(block)


def _csv_ready(table: pa.Table) -> pa.Table:
    """``table`` with the columns a CSV cell cannot hold as such (lists such as
    quarantine ``reasons``, structs, maps, unions, intervals) as JSON text, as --format json
    shows them."""
    for index, column in enumerate(table.columns):
        kind = column.type
        if pa.types.is_interval(kind):  # as DuckDB writes them: '1 day 02:00:00'
            import duckdb

            cells = duckdb.from_arrow(pa.table({"v": column})).select("CAST(v AS VARCHAR)").to_arrow_table()[0]
        elif pa.types.is_nested(kind) or pa.types.is_union(kind):
            texts = [None if v is None else json.dumps(v, default=_json_default) for v in column.to_pylist()]
            cells = pa.chunked_array([pa.array(texts, pa.string())])
        else:
            continue
        table = table.set_column(index, table.field(index).with_type(pa.string()), cells)
    return table


def _progress(amount: ProgressColumn | None = None) -> Progress:
    """A bar on stderr that goes away when done (none when stdout or stderr is not a
    terminal, so pipes, ``| tee`` and logs get only the result); ``amount`` shows how far
    it is (default: items done of the total)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        amount or MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not (err.is_terminal and out.is_terminal),
    )


@contextlib.contextmanager
def _counting(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A bar for one task, yielding the callback that advances it by a count (the
    ``progress`` argument of the api's generators and producer). It goes once the count
    reaches ``total``: the command may go on with other work, which this bar does not
    measure (the demo lands and processes what it generated)."""
    with _progress() as bar:
        task = bar.add_task(description, total=total)

        def advance(n: int) -> None:
            bar.update(task, advance=n)
            if total is not None and bar.tasks[0].completed >= total:
                bar.stop()

        yield advance


def _run_with_progress(call: Callable[[api.Progress], api.RunResult]) -> api.RunResult:
    with _progress(DownloadColumn()) as bar:
        tasks: dict[str, Any] = {}

        def progress(task: str, advance: int, total: int | None) -> None:
            if task not in tasks:
                tasks[task] = bar.add_task(task, total=total)
            bar.update(tasks[task], advance=advance)

        return call(progress)


def _print_run(result: api.RunResult) -> None:
    silver = result.stages.get("silver")
    if silver:
        _say(
            f"silver: read {silver.rows_read:,} rows → {silver.rows_valid:,} valid, "
            f"{silver.rows_quarantined:,} quarantined, {silver.rows_duplicate:,} duplicate "
            f"({silver.rows_corrected:,} corrections)"
        )
    if result.gold:
        _say("gold: " + ", ".join(_whole(f"{k} {v:,}") for k, v in result.gold.items()))
    _say(f"run {result.run_id}: {result.status}" + (f" — {result.message}" if result.message else ""))


# -- commands ------------------------------------------------------------------------------


@generate_app.command("csv")
@guarded
def generate_csv(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the exports into.")],
    rows: Annotated[int, typer.Option(help="Order lines to write.")] = 100_000,
    regions: Annotated[
        list[str] | None, typer.Option("--regions", help="Regions to export (repeat or comma-separate).")
    ] = None,
    error_rate: Annotated[float, typer.Option(help="Share of defective rows.")] = 0.02,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same files.")] = 42,
    home: Home = None,
) -> None:
    """Write realistic regional CSV exports (one file per region per day) with defects."""
    chosen = [r.strip() for item in regions or [] for r in item.split(",") if r.strip()] or None
    with _counting("generating", rows) as advance:
        summary = api.generate_csv(out_dir, rows, chosen, error_rate, seed, progress=advance)
    _say(
        f"wrote {summary.rows_written:,} rows in {summary.files:,} files under {out_dir} "
        f"({summary.defective_rows:,} defective, {summary.exact_duplicates:,} duplicates, {summary.corrections:,} corrections)",
        whole=[str(out_dir)],
    )


@generate_app.command("oltp")
@guarded
def generate_oltp(
    dsn: Annotated[
        str | None,
        typer.Option(
            help="Target database, without password (default: the local service's shop database as the owner role; "
            "password from SALESLAKE_POSTGRES_PASSWORD_FILE)."
        ),
    ] = None,
    orders: Annotated[int, typer.Option(help="Orders to create (1-6 lines each).")] = 10_000,
    mutate: Annotated[
        bool, typer.Option("--mutate", help="Apply one round of later changes (fills first when empty).")
    ] = False,
    replace: Annotated[bool, typer.Option("--replace", help="Drop and recreate the shop tables.")] = False,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same shop.")] = 42,
    home: Home = None,
) -> None:
    """Create and fill a realistic operational shop database in PostgreSQL, or change it (--mutate)."""
    with _counting("loading order lines", None) as advance:
        summary = api.generate_oltp(dsn, orders, mutate, seed, _settings(home), replace, progress=advance)
    counts = _named_counts(summary.tables)
    if summary.loaded:
        _say(f"filled {summary.dsn} (seed {summary.seed}): " + _named_counts(summary.loaded))
    if summary.action == "unchanged":
        _say(
            f"{summary.dsn} already holds this shop (seed {summary.seed}, {summary.orders:,} orders, "
            f"{summary.round} mutation round(s)): nothing changed; use --mutate or --replace"
        )
    if summary.changes:
        _say(f"mutation round {summary.round}: " + _named_counts(summary.changes))
        _say(f"{summary.shared_updated_at_rows:,} changed rows share updated_at {_whole(summary.shared_updated_at)}")
    _say(f"now: {counts} ({summary.seconds:.1f} s)")


@ingest_app.command("postgres")
@guarded
def ingest_postgres(
    dsn: Annotated[
        str | None,
        typer.Option(
            help="Source database, without password (default: the shop database as the read-only reader role; "
            "password from SALESLAKE_POSTGRES_READER_PASSWORD_FILE)."
        ),
    ] = None,
    tables: Annotated[
        list[str] | None,
        typer.Option(
            "--tables", help="Logical tables to extract (repeat or comma-separate; orders and order_lines go together)."
        ),
    ] = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for another run's lock.")] = 0.0,
    home: Home = None,
) -> None:
    """Incremental extract of the operational database into bronze and silver (exactly once)."""
    result = api.ingest_postgres(dsn, tables, _settings(home), wait)
    taken = _named_counts(result.tables)
    _say(
        f"extract {result.extract_seq}: {taken} changed ({result.rows:,} rows read in "
        f"{result.extract_seconds:.1f} s, {result.rows_per_second:,.0f} rows/s)"
    )
    c = result.silver
    _say(
        f"silver: {c.rows_valid:,} lines valid, {c.rows_quarantined:,} quarantined, {c.rows_duplicate:,} unchanged, "
        f"{result.removed:,} removed (cancelled or deleted); reference changes: "
        + (", ".join(_whole(f"{v:,} {k}") for k, v in result.reference.items()) or "none")
        + "".join(f"; {_whole(f'{v:,} {k}')} quarantined" for k, v in result.reference_quarantined.items())
    )


@ingest_app.command("csv")
@guarded
def ingest_csv(
    paths: Annotated[list[Path], typer.Argument(help="CSV files or folders of them.")],
    source: Annotated[str | None, typer.Option(help="Source name (default: each file's folder name).")] = None,
    delimiter: Annotated[str | None, typer.Option(help="Field delimiter, overrides detection.")] = None,
    decimal: Annotated[str | None, typer.Option(help="Decimal mark '.' or ',', overrides detection.")] = None,
    date_format: Annotated[str | None, typer.Option(help="Date format such as %d-%m-%Y, overrides detection.")] = None,
    encoding: Annotated[str | None, typer.Option(help="Text encoding such as cp1252 (default UTF-8).")] = None,
    currency: Annotated[str | None, typer.Option(help="ISO 4217 currency of the amounts.")] = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for another run's lock.")] = 0.0,
    reparse: Annotated[
        bool,
        typer.Option(
            "--reparse",
            help="Parse files that already landed again with these options (e.g. a wrong --decimal): "
            "the next run replaces their silver and quarantine rows, once.",
        ),
    ] = False,
    home: Home = None,
) -> None:
    """Land files in bronze (content-addressed: landing the same file twice is a no-op).

    A file landed with wrong options is corrected with --reparse and the right ones, e.g.
    `saleslake ingest csv exports/fr/day.csv --decimal , --reparse`, then `saleslake run`.
    """
    with _progress() as bar:
        task = bar.add_task("checking and landing files", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, advance=done, total=total)

        result = api.ingest_csv(
            paths, source, delimiter, decimal, date_format, encoding, currency, _settings(home), wait, progress, reparse
        )
    for problem in result.errors:
        _report("error:", "bold red", str(problem))
    for path in result.header_only:
        _report("skipped:", "yellow", f"{path}: header only, no data rows")
    extras: dict[tuple[str, ...], list[str]] = {}
    for row in result.landed:
        if row["extra_columns"]:
            extras.setdefault(tuple(row["extra_columns"]), []).append(row["original_name"])
    for columns, names in extras.items():
        where = names[0] if len(names) == 1 else f"{len(names)} files (e.g. {names[0]})"
        _report("note:", "yellow", f"{where}: extra column(s) {_some(columns)} kept in bronze, not used in silver")
    total = sum(r["size_bytes"] for r in result.landed)
    if reparse:
        _say(
            f"{len(result.reparsed)} file(s) to parse again at the next run; "
            f"{len(result.already_landed)} already parsed with these options"
        )
    else:
        _say(f"landed {len(result.landed)} file(s) ({total:,} bytes); {len(result.already_landed)} already landed")
    if result.errors:
        raise typer.Exit(1)


@app.command()
@guarded
def run(
    until: Annotated[api.Stage, typer.Option(help="Last layer to process.")] = "gold",
    max_quarantine_share: Annotated[float | None, typer.Option(help="Quality gate threshold (default 0.20).")] = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for another run's lock.")] = 0.0,
    home: Home = None,
) -> None:
    """Process everything landed and not yet processed, through the requested layer."""
    result = _run_with_progress(lambda p: api.run(until, max_quarantine_share, _settings(home), wait, p))
    _print_run(result)


@rebuild_app.command("gold")
@guarded
def rebuild_gold(
    wait: Annotated[float, typer.Option(help="Seconds to wait for another run's lock.")] = 0.0,
    home: Home = None,
) -> None:
    """Rebuild gold from silver (dbt build + tests + publish)."""
    result = _run_with_progress(lambda p: api.rebuild_gold(_settings(home), wait, p))
    _print_run(result)


@app.command()
@guarded
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    limit: Annotated[int, typer.Option(help="Runs to show.")] = 20,
    home: Home = None,
) -> None:
    """Recent runs with row accounting per stage."""
    runs = api.status(limit, _settings(home))
    if as_json:
        sys.stdout.write(json.dumps(runs, default=_json_default, indent=2) + "\n")
        return
    out.print("[bold]saleslake runs[/]" if runs else "no runs yet", highlight=False)
    for entry in runs:
        _print_run_entry(entry)
    _print_streams(runs)
    _print_freshness(api.freshness(_settings(home)))


def _print_streams(runs: list[dict]) -> None:
    live = [r for r in runs if r.get("stream") and r["stream"]["alive"]]
    for r in live:
        st = r["stream"]
        _say(
            f"stream {r['run_id']} on {st['topic']} (group {st['group_id']}): {st['records']:,} records, "
            f"lag {st['total_lag']:,}, last beat {st['updated_at']}"
        )


COUNTS = {"rows_read": "read", "rows_valid": "valid", "rows_quarantined": "quarantined", "rows_duplicate": "duplicate"}


def _print_run_entry(entry: dict) -> None:
    """One run: a heading line (id, command, status, start), then its stages' counts in
    narrow columns; an error as wrapped text below. Fits the terminal without cutting a
    number or an id (the heading folds at its spaces; counts too wide for a table are
    printed one stage per line)."""
    started = (entry["started_at"] or "")[:19].replace("T", " ")
    state = entry["status"]
    if state == "stale":  # another host's run gone silent: maybe still running, maybe dead
        state = f"stale (silent {_duration(entry['stale_seconds'])})"
    out.print()
    _say(Text.assemble((entry["run_id"], "bold"), f"  {entry['command']}  {state}  {started}"))
    if entry["stages"]:
        rows = [[stage, *(_count(counts.get(k)) for k in COUNTS)] for stage, counts in entry["stages"].items()]
        print_narrow(None, ["stage"], list(COUNTS.values()), rows)
    for paragraph in (entry["error"] or "").splitlines():
        _say(f"  {paragraph}", indent="    ")


def _duration(seconds: int) -> str:
    """``3d 4h``, ``2h 05m``, ``7m``: the two largest units, enough to judge a silence."""
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {rest // 60:02d}m" if hours else f"{rest // 60}m"


def _count(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


#: Between two columns of a narrow table: a space of padding on each side of the
#: (blank) divider of box.SIMPLE_HEAD.
COLUMN_GAP = 3


def print_narrow(title: str | None, texts: list[str], numbers: Sequence[str], rows: list[list[str]]) -> None:
    """A table for 80-column terminals and pipes: text columns (``texts``, first) fold at
    their spaces when the terminal is narrow, number columns (``numbers``) never shrink
    nor wrap. When even the numbers and the longest word of each text column do not fit,
    each row is one message instead (``silver: read 20,000,000, valid ...``, folded at
    a space like any summary): a number or an id is never cut ("20,0…")."""
    widths = _column_widths([*texts, *numbers], len(texts), rows, out.width)
    if widths is None:
        for part in title.split("\n") if title else []:
            _say(part)
        for cells in rows:
            label = " ".join(cell for cell in cells[: len(texts)] if cell)
            counts = zip(numbers, cells[len(texts) :], strict=True)
            _say(f"{label}: " + ", ".join(_whole(f"{name} {cell}") for name, cell in counts if cell))
        return
    view = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title_justify="left")
    for name, width in zip(texts, widths, strict=False):
        view.add_column(name, overflow="fold", width=width)
    for name, width in zip(numbers, widths[len(texts) :], strict=True):
        view.add_column(name, justify="right", no_wrap=True, width=width)
    for cells in rows:
        view.add_row(*cells)
    out.print(view)


def _column_widths(names: list[str], texts: int, rows: list[list[str]], room: int) -> list[int] | None:
    """Widths for a table of ``names`` (the first ``texts`` of them text, the rest numbers)
    within ``room`` columns: a number column as wide as its widest cell, a text column its
    longest word at least and what is left up to its widest cell; None when even that
    does not fit."""
    cells = [[name, *(r[i] for r in rows)] for i, name in enumerate(names)]
    widest = [max(map(len, column)) for column in cells]
    least = [max(len(word) for cell in column for word in cell.split() or [""]) for column in cells[:texts]]
    least += widest[texts:]
    spare = room - COLUMN_GAP * (len(names) - 1) - sum(least)
    if spare < 0:
        return None
    for i in range(texts):
        extra = min(spare, widest[i] - least[i])
        least[i] += extra
        spare -= extra
    return least


def _print_freshness(rows: list[dict]) -> None:
    if not rows:
        return
    published = {r["gold_published_at"] for r in rows}
    # the age of the newest landed line stands for its landing time: one column less
    cells = [
        [
            r["source_system"],
            _when(r["last_event_at"]),
            "" if r["silver_age_seconds"] is None else f"{r['silver_age_seconds']:,.0f}",
            f"{r['silver_lines']:,}",
            f"{r['gold_lines']:,}",
        ]
        for r in rows
    ]
    print_narrow("\nfreshness per source", ["source", "newest event"], ["age s", "silver", "gold"], cells)
    if len(published) == 1:  # one gold release serves every source
        _say(f"gold published {_when(published.pop()) or 'never'}")
    else:
        for r in rows:
            _say(f"gold of {r['source_system']} published {_when(r['gold_published_at'])}")


def _when(stamp: str | None) -> str:
    """A timestamp as 'YYYY-MM-DD HH:MM:SS', or the date alone at midnight (exports have
    dates only); the space lets a narrow column wrap it."""
    return (stamp or "")[:19].replace("T", " ").removesuffix(" 00:00:00")


@app.command()
@guarded
def quarantine(
    reason: Annotated[
        str | None, typer.Option(help="Only rows with this reason code (or its prefix, e.g. invalid_date).")
    ] = None,
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 50,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
    home: Home = None,
) -> None:
    """Rejected rows with all their reasons and lineage."""
    print_table(api.quarantine(reason, limit, _settings(home)), fmt, "quarantine")


@app.command()
@guarded
def query(
    sql: Annotated[str, typer.Argument(help="One read-only SQL statement over gold.*, silver.*, system.*.")],
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
    allow_files: Annotated[
        list[Path] | None,
        typer.Option(
            "--allow-files",
            metavar="DIR",
            help="Let the SQL read files under DIR (read_csv, read_parquet, ...; repeatable; also query.allow_files). "
            "Off by default; DIR may not hold the lake.",
        ),
    ] = None,
    home: Home = None,
) -> None:
    """Read-only SQL over the last committed snapshots (no file, network or setting access)."""
    print_table(api.query(sql, _settings(home), allow_files or ()), fmt)


class Service(str, Enum):
    postgres = "postgres"
    kafka = "kafka"
    s3 = "s3"


ServiceNames = Annotated[
    list[Service] | None,
    typer.Argument(
        help="Services (default: postgres and kafka for start, all for stop and status).", show_default=False
    ),
]
ServicePort = Annotated[
    int | None,
    typer.Option(
        "--port",
        help="Port of the one service named: PostgreSQL (default 5432, SALESLAKE_POSTGRES__PORT), Kafka (default 9092) "
        "or S3 (default: its last port when free, else a free one).",
    ),
]
ControllerPort = Annotated[
    int | None, typer.Option("--controller-port", help="KRaft controller port (default port + 1).")
]


def _services(
    action: Literal["start", "stop", "status"],
    names: list[Service] | None,
    home: str | None,
    port: int | None,
    controller: int | None,
) -> None:
    import shlex

    chosen = list(dict.fromkeys(n.value for n in names)) if names else [s.value for s in Service]
    if port is not None and len(chosen) != 1:
        raise UserError(
            "--port sets the port of one service: name it, e.g. 'saleslake services start postgres --port 5433'"
        )
    kafka_port = port if chosen == ["kafka"] else None
    postgres_port = port if chosen == ["postgres"] else None
    s3_port = port if chosen == ["s3"] else None
    settings = _settings(home)
    for name in chosen:  # one at a time: each prints as soon as it is up (or down)
        info = api.services(action, [name], settings, kafka_port, controller, postgres_port, s3_port)[name]
        shown = ", ".join(_whole(f"{k}={v}") for k, v in info.items() if v is not None and not isinstance(v, dict))
        # a shell comment, folded: `eval "$(saleslake services start s3)"` runs the exports only
        _say(f"# {name}: {shown}", indent="#   ")
        for value in info.values():  # variables to export (port, endpoint, the secret files)
            if isinstance(value, dict):
                for key, item in value.items():  # one line each, whatever its length: a path stays whole
                    out.print(f"  export {key}={shlex.quote(str(item))}", highlight=False, markup=False, soft_wrap=True)


@services_app.command("start")
@guarded
def services_start(
    names: ServiceNames = None, port: ServicePort = None, controller_port: ControllerPort = None, home: Home = None
) -> None:
    """Start services (installing or fetching them on first use) and print their connection
    settings (PostgreSQL: DSNs without password, and the variables naming the password files;
    S3: the endpoint and bucket, and the variables naming the key files)."""
    _services("start", names, home, port, controller_port)


@services_app.command("stop")
@guarded
def services_stop(names: ServiceNames = None, home: Home = None) -> None:
    """Stop services cleanly."""
    _services("stop", names, home, None, None)


@services_app.command("status")
@guarded
def services_status(names: ServiceNames = None, home: Home = None) -> None:
    """Whether services run, and how to connect."""
    _services("status", names, home, None, None)


@app.command()
@guarded
def produce(
    events: Annotated[int, typer.Option("--events", min=1, help="Events to send.")],
    interval: Annotated[float | None, typer.Option(help="Seconds between events (instead of --rate).")] = None,
    rate: Annotated[
        float | None, typer.Option(help="Events per second, steadily paced (default: as fast as possible).")
    ] = None,
    topic: Annotated[str | None, typer.Option(help="Kafka topic (default kafka.topic, pos.sales).")] = None,
    error_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of defective events (malformed messages or bad lines).")
    ] = 0.02,
    fraud_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of events carrying a fraud pattern.")
    ] = 0.01,
    seed: Annotated[
        int | None, typer.Option(min=0, help="Seed of the sales: same seed, same events (default: a new one, printed).")
    ] = None,
    catalog_seed: Annotated[
        int, typer.Option(min=0, help="Seed of stores, products and customers, as in 'generate csv --seed'.")
    ] = 42,
    start_time: Annotated[
        str | None, typer.Option(help="Simulate event times from this ISO-8601 instant (default: the send time).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    home: Home = None,
) -> None:
    """Send simulated point-of-sale events (CONTRACT §6) to Kafka and print exactly what a consumer must find."""
    start = _produce_start(interval, rate, start_time)
    from saleslake.sample.pos_producer import ProduceError

    failure: ProduceError | None = None
    with _counting("producing", events) as advance:
        try:
            summary = api.produce(
                events,
                rate,
                interval,
                topic,
                error_rate,
                fraud_rate,
                seed,
                _settings(home),
                progress=advance,
                start_time=start,
                catalog_seed=catalog_seed,
            )
        except ProduceError as exc:  # still say what was sent, then fail
            failure, summary = exc, exc.summary
    if as_json:
        sys.stdout.write(summary.to_json() + "\n")
    else:
        _print_produce(summary)
    if failure is not None:
        raise failure
    if summary.interrupted:
        _report("interrupted:", "", f"{summary.events:,} of {events:,} events were sent (the summary counts those)")
        raise typer.Exit(130)


def _produce_start(interval: float | None, rate: float | None, start_time: str | None) -> datetime | None:
    """The simulated time of the first event (None: the send time), once the pacing
    options are known to agree; a bad option is a usage error (exit 2) naming it."""
    if interval is not None and rate is not None:
        raise typer.BadParameter("use either --interval or --rate, not both", param_hint="'--interval' / '--rate'")
    for name, value in (("--interval", interval), ("--rate", rate)):
        if value is not None and not value > 0:
            raise typer.BadParameter(f"must be positive, not {value}", param_hint=f"'{name}'")
    if start_time is None:
        return None
    try:
        return datetime.fromisoformat(start_time)
    except ValueError:
        raise typer.BadParameter(f"not an ISO-8601 time: {start_time!r}", param_hint="'--start-time'") from None


def _counts(d: dict[str, int]) -> str:
    return ", ".join(_whole(f"{k} {v:,}") for k, v in sorted(d.items(), key=lambda kv: (-kv[1], kv[0])))


def _print_produce(s: Any) -> None:
    _say(
        f"sent {s.events:,} events (seed {s.seed}) to {s.topic} ({s.partitions} partitions) in {s.elapsed_seconds:.1f} s "
        f"({s.events_per_second:,.0f} events/s); delivered {s.delivered:,}, delivery errors {s.delivery_errors:,}"
    )
    _say(
        f"malformed messages: {s.malformed_messages:,}"
        + (f" ({_counts(s.malformed_by_reason)})" if s.malformed_messages else "")
    )
    _say(
        f"lines in well-formed messages: {s.lines:,} → {s.valid_lines:,} valid (gross sales {s.valid_sales}), "
        f"{s.defective_lines:,} defective" + (f" ({_counts(s.defective_lines_by_reason)})" if s.defective_lines else "")
    )
    _say(f"expected: silver {s.valid_lines:,} lines, quarantine {s.expected_quarantine_rows:,} rows")
    velocity = s.fraud_patterns.get("velocity", 0)
    parts = [_whole(f"{k} {v:,} lines") for k, v in s.fraud_patterns.items() if k != "velocity"]
    if velocity:
        parts.append(_whole(f"velocity {velocity:,} bursts") + f" ({s.velocity_transactions:,} transactions)")
    _say(f"fraud patterns: {s.fraud_events:,} events" + (f" ({', '.join(parts)})" if parts else ""))
    if s.stores_registered or s.products_registered:
        _say(f"reference data: {s.stores_registered:,} stores and {s.products_registered:,} products registered")


@app.command()
@guarded
def stream(
    topic: Annotated[str | None, typer.Option(help="Topic (default: kafka.topic, pos.sales).")] = None,
    max_batch: Annotated[int | None, typer.Option(help="Messages per micro-batch at most (default 50,000).")] = None,
    max_wait: Annotated[
        float | None, typer.Option(help="Seconds a micro-batch waits for messages (default 1).")
    ] = None,
    until_idle: Annotated[
        bool,
        typer.Option(
            "--until-idle",
            help="Stop once the lake holds every record of every partition (error after "
            "stream.idle_wait_seconds without progress).",
        ),
    ] = False,
    refresh_gold_every: Annotated[
        float | None, typer.Option(help="Rebuild gold every S seconds while streaming.")
    ] = None,
    home: Home = None,
) -> None:
    """Consume point-of-sale events into bronze and silver, exactly once (stop with Ctrl-C or SIGTERM)."""
    result = api.stream(
        topic=topic,
        max_batch=max_batch,
        max_wait=max_wait,
        until_idle=until_idle,
        refresh_gold_every=refresh_gold_every,
        settings=_settings(home),
        stop=_stop_on_signals(),
        on_batch=_print_batch,
    )
    c = result.counts
    _say(
        f"stream {result.run_id}: {result.records:,} records in {result.batches:,} batches, {result.seconds:.1f} s "
        f"({result.stopped_by}) → {c.rows_valid:,} lines valid, {c.rows_quarantined:,} quarantined, "
        f"{c.rows_duplicate:,} duplicate; lag {sum(result.lag.values()):,}; gold refreshed {result.gold_refreshes}×"
    )


def _stop_on_signals() -> threading.Event:
    """An event that SIGTERM and Ctrl-C set: the stream finishes its micro-batch and
    commits before it stops, instead of dying mid-write."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _print_batch(r: Any) -> None:
    """One line per micro-batch, on a terminal only (a service's log gets the summary)."""
    if err.is_terminal:
        _say(
            f"batch {r.batches:,}: {r.records:,} records, {r.counts.rows_valid:,} lines valid, "
            f"lag {sum(r.lag.values()):,}",
            err,
        )


@app.command()
@guarded
def demo(
    rows: Annotated[int, typer.Option(help="Order lines to generate.")] = 100_000,
    home: Home = None,
) -> None:
    """Generate sample exports, run every stage on embedded defaults, and show the result."""
    settings = _settings(home)
    out.print(f"[bold]saleslake demo[/] — lake at {settings.home.absolute()}")
    with _counting("generating sample exports", rows) as advance:
        result = api.demo(rows, settings, progress=advance)
    _print_demo(result)


def _print_demo(demo: api.DemoResult) -> None:
    generated, money = demo.generated, demo.revenue
    out.print(
        f"1. generated {generated['rows_written']:,} order lines in {generated['files']:,} regional daily "
        f"exports under {demo.samples}"
    )
    out.print(f"2. landed {demo.landed:,} new file(s) in bronze ({demo.already_landed:,} already there)")
    out.print(f"3. ran silver and gold: {demo.run_message}")
    layers = [[*key.split(" ", 1), f"{count:,}"] for key, count in demo.rows.items()]
    print_narrow("what is in the lake now", ["layer", "table"], ["rows"], layers)
    out.print(
        f"revenue {money['net']:,.2f} (net of discounts; gross sales {money['gross']:,.2f}), profit "
        f"{money['profit']:,.2f}, tax {money['tax']:,.2f}; {money['fraud_lines']:,} suspected-fraud lines; average "
        f"data-quality score {money['dq']}; {money['customer_versions']:,} customer versions beyond the first (SCD2)"
    )
    out.print(f"fact_sales reconciles with silver: {money['facts']:,} lines, sales {money['gross']:,.4f}")
    out.print(f"done in {demo.seconds:.1f} s\n")
    _print_next_steps(demo)


def _print_next_steps(demo: api.DemoResult) -> None:
    lake = demo.lake
    home = f" --home {lake.home}" if lake.home != Path("lakehouse").absolute() else ""
    cli = _command_name()
    out.print("[bold]Try next:[/]")
    for line in (
        "status",
        "quarantine --limit 5",
        'query "SELECT region, round(sum(sales), 2) AS sales FROM gold.agg_sales_daily GROUP BY 1 ORDER BY 2 DESC"',
        'query "SELECT customer_id, segment, valid_from, valid_to, version FROM gold.dim_customer WHERE customer_id '
        'IN (SELECT customer_id FROM gold.dim_customer WHERE version = 2 LIMIT 1)"',
    ):
        out.print(f"  {cli} {line}{home}", highlight=False)
    out.print(
        f"  {cli} dashboard{home}    # revenue, trends, data quality and pipeline health on http://127.0.0.1:8501"
    )
    out.print(f"  {cli} doctor{home}       # preflight checks")
    out.print(
        f"  files: bronze {lake.bronze}, silver {lake.home / 'silver'}, gold Delta tables {lake.gold}, "
        f"warehouse {lake.warehouse}"
    )


def _command_name() -> str:
    """How the user reaches this program from their shell (``.venv/bin/saleslake`` or ``saleslake``)."""
    exe = Path(sys.argv[0])
    if exe.name == "saleslake" and not shutil.which("saleslake"):
        try:
            return str(exe.resolve().relative_to(Path.cwd()))
        except ValueError:
            return str(exe)
    return "saleslake"


@app.command("copy-lake")
@guarded
def copy_lake(
    source: Annotated[str, typer.Argument(help="The lake: a folder or s3://bucket/prefix.", show_default=False)],
    target: Annotated[
        str, typer.Argument(help="Where to copy it: an empty folder or s3://bucket/prefix.", show_default=False)
    ],
) -> None:
    """Copy a lake between a folder and s3://bucket/prefix with its history, and verify it.

    Every object but the rebuildable warehouse is copied byte for byte; then each object's
    size and SHA-256 and each Delta table's version and row count are compared. A copy
    that was interrupted is completed by running the same command again."""
    result = api.copy_lake(source, target)
    _print_copy(result)


def _print_copy(result: api.CopyResult) -> None:
    rows = sum(r for _, r in result.tables.values())
    _say(f"copied {result.source}", whole=[result.source])
    _say(f"    to {result.target}", whole=[result.target])
    again = " (completed an interrupted copy)" if result.resumed else ""
    _say(f"{result.copied:,} objects, {_mib(result.copied_bytes)} written in {result.seconds:.1f} s{again}")
    _say(f"verified {result.objects:,} objects, {_mib(result.bytes)}: sizes and SHA-256 equal")
    _say(f"verified {len(result.tables)} Delta tables: versions and {rows:,} rows equal")
    if result.left_out:
        _say(f"not copied: {_some(tuple(result.left_out), 4)} (rebuilt or per run)")


def _mib(size: int) -> str:
    return f"{size / (1 << 20):,.1f} MiB"


@app.command()
@guarded
def doctor(
    home: Home = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
    skip_dbt: Annotated[bool, typer.Option("--skip-dbt", help="Skip parsing the dbt project (saves ~4 s).")] = False,
) -> None:
    """Preflight checks: config, lake home and disk, versions, dbt project, PostgreSQL and Kafka.

    One line per check with a fix hint for each failure; exits 1 when a required check fails
    (a service the configuration does not use is only a warning)."""
    checks = api.doctor(home=home, include_dbt=not skip_dbt)
    if as_json:
        print(json.dumps([c.as_dict() for c in checks], indent=2, default=_json_default))
    else:
        for check in checks:
            _print_check(check)
    broken = [c.name for c in checks if c.required and not c.ok]
    if broken:
        _report("doctor:", "bold red", f"{len(broken)} required check(s) failed: {', '.join(broken)}")
        raise typer.Exit(1)


CHECK_STYLES = {"ok": "green", "warn": "yellow", "FAIL": "bold red"}


def _print_check(check: Any) -> None:
    """One check: state, name, detail and fix, folded under the detail (or under the
    name when a word of it, a DSN or a path, is too long for that)."""
    text = Text.assemble((f"{check.state:<4}", CHECK_STYLES[check.state]), f"  {check.name:<20} {check.detail}")
    if not check.ok and check.hint:
        text.append(f" — fix: {check.hint}", style="dim")
    hang = 4 + 2 + 20 + 1
    if hang + max(map(len, _glued(text.plain).split())) > out.width:
        hang = 4 + 2
    _say(text, indent=" " * hang)


@publish_app.command("postgres")
@guarded
def publish_postgres(
    dsn: Annotated[
        str | None,
        typer.Option(
            help="Warehouse database, without password (default: the local service's warehouse database as the "
            "warehouse role; password from SALESLAKE_POSTGRES_WAREHOUSE_PASSWORD_FILE)."
        ),
    ] = None,
    schema: Annotated[
        str | None, typer.Option(help="Target schema (default: postgres.warehouse_schema, gold).")
    ] = None,
    home: Home = None,
) -> None:
    """Publish the latest gold release into a PostgreSQL warehouse (star schema, incremental, atomic)."""
    done = api.publish_postgres(dsn, schema, _settings(home))
    if done.skipped:
        _say(f"{done.dsn} schema {done.schema} already holds gold release {done.release_id}: nothing changed")
        return
    if done.migrations_applied:
        _say(f"schema {done.schema} migrated to version {done.schema_version}")
    _say(f"published gold release {done.release_id} to {done.dsn} schema {done.schema} in {done.seconds:.1f} s")
    tables = [  # a table whose gold did not change is skipped
        [name, f"{t.rows:,}", *(("unchanged", "") if t.skipped else (f"{t.written:,}", f"{t.deleted:,}"))]
        for name, t in done.tables.items()
    ]
    print_narrow(None, ["table"], ["rows", "written", "deleted"], tables)


@app.command()
@guarded
def dashboard(
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8501,
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")] = "127.0.0.1",
    allow_remote: Annotated[
        bool, typer.Option("--allow-remote", help="Allow a --host that is not loopback (the dashboard has no login).")
    ] = False,
    home: Home = None,
) -> None:
    """The web dashboard (Streamlit) on 127.0.0.1: revenue, quality and pipeline health from the last committed gold."""
    code = api.dashboard(port, host, _settings(home), allow_remote=allow_remote)
    if code:
        raise typer.Exit(code)


def main() -> None:
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    app()


if __name__ == "__main__":
    main()
