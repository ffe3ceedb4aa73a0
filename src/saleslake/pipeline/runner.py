"""One place that runs a command: it takes the lake's write lock, records the command and
each stage in the run ledger with its row counts, turns any exception into the ledger's
one-line error (and re-raises it: the CLI turns it into the exit code of its class, see
:mod:`saleslake.errors`), and reports progress.

    with command_run(lake, "run", wait_seconds=30, progress=progress) as run:
        with run.stage("silver") as silver:
            silver.counts = process_csv(...)
            silver.details["silver_version"] = 3
        run.details["message"] = "gold published"

A stage block that raises is recorded as failed with the error's first line; the command
is then recorded as failed too (``quality_gate`` for :class:`QualityGateError`). A
killed process leaves its ``running`` row behind, which :func:`saleslake.serve.status`
shows as interrupted once the lock is free.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime

from saleslake.errors import QualityGateError, SaleslakeError
from saleslake.lake import Lake
from saleslake.runs import Ledger, StageCounts, StageRecord, lake_lock, new_run_id, utcnow

#: ``(task, advance, total)``: a progress bar's update (total None: unknown or unchanged).
Progress = Callable[[str, int, int | None], None]


def error_line(exc: BaseException) -> str:
    """The ledger's error text: saleslake's own message, or the exception's type and
    message for anything else; its first line only."""
    message = str(exc) if isinstance(exc, SaleslakeError) else f"{type(exc).__name__}: {exc}"
    return (message.strip().splitlines() or [type(exc).__name__])[0]


def failure_status(exc: BaseException) -> str:
    return "quality_gate" if isinstance(exc, QualityGateError) else "failed"


@dataclass
class StageOutcome:
    """What a stage block reports: its counts and details; rarely another status with an
    error line (a problem reported, not raised), or ``record`` False (nothing to say)."""

    counts: StageCounts = field(default_factory=StageCounts)
    details: dict = field(default_factory=dict)
    status: str = "succeeded"
    error: str | None = None
    record: bool = True


@dataclass
class CommandRun:
    """One command being run: its id, ledger and the details of its final row."""

    lake: Lake
    command: str
    run_id: str
    ledger: Ledger
    started: datetime
    progress_callback: Progress | None = None
    details: dict = field(default_factory=dict)  # of the final row
    status: str = "succeeded"  # of the final row when no error was raised
    error: str | None = None

    def record(
        self,
        stage: str,
        status: str = "succeeded",
        started: datetime | None = None,
        counts: StageCounts | None = None,
        details: dict | None = None,
        error: str | None = None,
    ) -> None:
        """Append a finished stage to the ledger."""
        self.ledger.record(
            StageRecord(stage, status, started or utcnow(), utcnow(), counts or StageCounts(), error, details or None)
        )

    @contextmanager
    def stage(self, name: str, details: dict | None = None) -> Iterator[StageOutcome]:
        """Run a stage's block and record it: its outcome when the block ends, or failed
        with the error's first line when it raises (the error goes on)."""
        outcome = StageOutcome(details=dict(details or {}))
        started = utcnow()
        try:
            yield outcome
        except BaseException as exc:
            self.record(name, failure_status(exc), started, outcome.counts, outcome.details, error_line(exc))
            raise
        if outcome.record:
            self.record(name, outcome.status, started, outcome.counts, outcome.details, outcome.error)

    def progress(self, task: str, advance: int, total: int | None = None) -> None:
        if self.progress_callback:
            self.progress_callback(task, advance, total)


@contextmanager
def command_run(
    lake: Lake,
    command: str,
    wait_seconds: float = 0.0,
    lock: bool = True,
    details: dict | None = None,
    progress: Progress | None = None,
    run_id: str | None = None,
) -> Iterator[CommandRun]:
    """Run ``command`` on ``lake``: hold the write lock (unless ``lock`` is False: a stream
    or a warehouse publish, which do not write what the lock guards), record it as running
    (with ``details``), then as succeeded with ``run.details``, or as failed with the
    error's first line."""
    run_id = run_id or new_run_id()
    with lake_lock(lake, run_id, command, wait_seconds) if lock else nullcontext():
        ledger = Ledger(lake, run_id, command)
        started = utcnow()
        # who runs it: how status tells a run in progress from one that was killed
        running = {**(details or {}), "pid": os.getpid(), "host": socket.gethostname(), "locked": lock}
        ledger.record(StageRecord("run", "running", started, details=running))
        run = CommandRun(lake, command, run_id, ledger, started, progress)
        try:
            yield run
        except BaseException as exc:
            run.record("run", failure_status(exc), started, details=run.details, error=error_line(exc))
            raise
        run.record("run", run.status, started, details=run.details, error=run.error)
