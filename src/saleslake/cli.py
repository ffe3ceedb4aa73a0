"""The ``saleslake`` command line: a thin layer over :mod:`saleslake.api`.

Exit codes (CONTRACT §1): 0 success, 1 user error (one line, no traceback), 2 usage,
3 pipeline failure (quality gate, failed gold tests), 4 transient failure.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from saleslake import api
from saleslake.errors import SaleslakeError

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

out = Console()
err = Console(stderr=True)

Home = Annotated[
    Path | None,
    typer.Option("--home", help="Lake directory (env SALESLAKE_HOME, default ./lakehouse).", show_default=False),
]


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn saleslake errors into one line on stderr and the contract's exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SaleslakeError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


def _settings(home: Path | None, **overrides: Any):
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
        pacsv.write_csv(table, sink)
        sys.stdout.write(sink.getvalue().to_pybytes().decode())
        return
    view = Table(title=title, show_lines=False)
    for name in table.column_names:
        view.add_column(name, overflow="fold")
    for row in table.to_pylist():
        view.add_row(*("" if v is None else str(v) for v in row.values()))
    out.print(view)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=True, disable=not err.is_terminal,
    )


def _bytes_progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TimeElapsedColumn(),
        console=err, transient=True, disable=not err.is_terminal,
    )


def _run_with_progress(call: Callable[[api.Progress], api.RunResult]) -> api.RunResult:
    with _bytes_progress() as bar:
        tasks: dict[str, Any] = {}

        def progress(task: str, advance: int, total: int | None) -> None:
            if task not in tasks:
                tasks[task] = bar.add_task(task, total=total)
            bar.update(tasks[task], advance=advance)

        return call(progress)


def _print_run(result: api.RunResult) -> None:
    silver = result.stages.get("silver")
    if silver:
        out.print(
            f"silver: read {silver.rows_read:,} rows → {silver.rows_valid:,} valid, "
            f"{silver.rows_quarantined:,} quarantined, {silver.rows_duplicate:,} duplicate "
            f"({silver.rows_corrected:,} corrections)"
        )
    if result.gold:
        out.print("gold: " + ", ".join(f"{k} {v:,}" for k, v in result.gold.items()))
    out.print(f"run {result.run_id}: {result.status}" + (f" — {result.message}" if result.message else ""))


# -- commands ------------------------------------------------------------------------------


@generate_app.command("csv")
@guarded
def generate_csv(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the exports into.")],
    rows: Annotated[int, typer.Option(help="Order lines to write.")] = 100_000,
    regions: Annotated[list[str] | None, typer.Option("--regions", help="Regions to export (repeat or comma-separate).")] = None,
    error_rate: Annotated[float, typer.Option(help="Share of defective rows.")] = 0.02,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same files.")] = 42,
    home: Home = None,
) -> None:
    """Write realistic regional CSV exports (one file per region per day) with defects."""
    chosen = [r.strip() for item in regions or [] for r in item.split(",") if r.strip()] or None
    with _progress() as bar:
        task = bar.add_task("generating", total=rows)
        summary = api.generate_csv(out_dir, rows, chosen, error_rate, seed, progress=lambda n: bar.update(task, advance=n))
    out.print(
        f"wrote {summary.rows_written:,} rows in {summary.files:,} files under {out_dir} "
        f"({summary.defective_rows:,} defective, {summary.exact_duplicates:,} duplicates, {summary.corrections:,} corrections)"
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
    home: Home = None,
) -> None:
    """Land files in bronze (content-addressed: landing the same file twice is a no-op)."""
    with _progress() as bar:
        task = bar.add_task("checking and landing files", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, advance=done, total=total)

        result = api.ingest_csv(paths, source, delimiter, decimal, date_format, encoding, currency, _settings(home),
                                wait, progress)
    for problem in result.errors:
        err.print(f"[bold red]error:[/] {problem}", highlight=False, soft_wrap=True)
    for path in result.header_only:
        err.print(f"[yellow]skipped:[/] {path}: header only, no data rows", highlight=False, soft_wrap=True)
    extras: dict[tuple[str, ...], list[str]] = {}
    for row in result.landed:
        if row["extra_columns"]:
            extras.setdefault(tuple(row["extra_columns"]), []).append(row["original_name"])
    for columns, names in extras.items():
        where = names[0] if len(names) == 1 else f"{len(names)} files (e.g. {names[0]})"
        err.print(f"[yellow]note:[/] {where}: extra column(s) {', '.join(columns)} kept in bronze, not used in silver",
                  highlight=False, soft_wrap=True)
    total = sum(r["size_bytes"] for r in result.landed)
    out.print(f"landed {len(result.landed)} file(s) ({total:,} bytes); {len(result.already_landed)} already landed")
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
    view = Table(title="saleslake runs")
    for name in ("run", "command", "status", "started", "stage", "read", "valid", "quarantined", "duplicate", "note"):
        view.add_column(name)
    for entry in runs:
        stages = entry["stages"] or {"": {}}
        for i, (stage, counts) in enumerate(stages.items()):
            first = i == 0
            view.add_row(
                entry["run_id"] if first else "", entry["command"] if first else "", entry["status"] if first else "",
                (entry["started_at"] or "")[:19] if first else "", stage,
                *(f"{counts.get(k):,}" if counts.get(k) is not None else "" for k in ("rows_read", "rows_valid", "rows_quarantined", "rows_duplicate")),
                (entry["error"] or "") if first else "",
            )
    out.print(view)


@app.command()
@guarded
def quarantine(
    reason: Annotated[str | None, typer.Option(help="Only rows with this reason code (or its prefix, e.g. invalid_date).")] = None,
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
    home: Home = None,
) -> None:
    """Read-only SQL over the last committed snapshots."""
    print_table(api.query(sql, _settings(home)), fmt)


class Service(str, Enum):
    kafka = "kafka"


ServiceNames = Annotated[list[Service] | None, typer.Argument(help="Services (default: all of them).", show_default=False)]
KafkaPort = Annotated[int | None, typer.Option("--port", help="Kafka broker port (default 9092).")]
ControllerPort = Annotated[int | None, typer.Option("--controller-port", help="KRaft controller port (default port + 1).")]


def _services(action: str, names: list[Service] | None, home: Path | None, port: int | None, controller: int | None) -> None:
    chosen = [n.value for n in names] if names else [s.value for s in Service]
    result = api.services(action, chosen, _settings(home), port, controller)
    for name, info in result.items():
        shown = ", ".join(f"{k}={v}" for k, v in info.items() if v is not None)
        out.print(f"{name}: {shown}", highlight=False, soft_wrap=True)


@services_app.command("start")
@guarded
def services_start(names: ServiceNames = None, port: KafkaPort = None, controller_port: ControllerPort = None,
                   home: Home = None) -> None:
    """Start services (fetching them on first use) and print their connection settings."""
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
def demo(
    rows: Annotated[int, typer.Option(help="Order lines to generate.")] = 100_000,
    home: Home = None,
) -> None:
    """Generate sample exports, run every stage on embedded defaults, and show the result."""
    from saleslake.serve.demo import run_demo

    run_demo(_settings(home), rows, out, err)


def main() -> None:
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    app()


if __name__ == "__main__":
    main()
