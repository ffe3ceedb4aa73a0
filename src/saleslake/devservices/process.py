"""Running the programs a local service needs (installers, Maven, initdb, Kafka's storage
tool) and the servers themselves: started detached, stopped by pid."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import psutil

from saleslake.devservices.ports import file_lock


def run_logged(cmd: list[str], log: IO[str], *, timeout: float, **options: Any) -> subprocess.CompletedProcess:
    """Run ``cmd`` with no input and its output, stdout and stderr interleaved as a terminal
    shows them, appended to ``log``: the file a failure's one-line message points to. The
    caller reads the exit status (``check=False``); ``options`` go to :func:`subprocess.run`
    (``cwd``, ``env``, ...)."""
    return subprocess.run(
        cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, timeout=timeout, check=False, **options
    )


def launch_detached(cmd: list[str], cwd: Path, out_file: Path) -> int | str:
    """Start ``cmd`` detached (its own session, reparented to init) with stdout and stderr
    in ``out_file``; return its pid, or the shell's complaint when it could not start."""
    if os.name != "posix":  # pragma: no cover - Windows
        with out_file.open("w", encoding="utf-8") as out:
            proc = subprocess.Popen(
                cmd,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                creationflags=getattr(subprocess, "DETACHED_PROCESS", 0)
                | getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0),
            )
        return proc.pid
    # A shell starts the program in the background and exits at once: the program is not
    # our child, so it never lingers as a zombie of this (possibly long-lived) Python process.
    script = 'out=$1; shift; "$@" >"$out" 2>&1 </dev/null & echo $!'
    shell = subprocess.run(
        ["/bin/sh", "-c", script, "sh", str(out_file), *cmd],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        start_new_session=True,
        timeout=60,
        check=False,
    )
    try:
        return int(shell.stdout.strip())
    except ValueError:
        return shell.stderr.strip() or "no pid"


def terminate(pid: int, timeout: float) -> None:
    """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL. A zombie counts as gone
    (where PID 1 does not reap orphans, e.g. some containers, it stays one)."""
    try:
        process = psutil.Process(pid)
        process.send_signal(signal.SIGTERM)
    except psutil.NoSuchProcess:
        return
    if wait_gone(process, timeout):
        return
    with contextlib.suppress(psutil.NoSuchProcess):
        process.kill()
    wait_gone(process, 10.0)


def wait_gone(process: psutil.Process, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                if os.name == "posix":
                    with contextlib.suppress(ChildProcessError, OSError):
                        os.waitpid(process.pid, os.WNOHANG)  # reap it if it is ours
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def last_error_line(*sources: Path | tuple[Path, int]) -> str:
    """The most telling error line (ERROR/FATAL level first, then any exception or error
    text, plus the line after it when that is not a stack frame) of the first source that
    has one, as one line. A source is a file or (file, offset to read from)."""
    level = re.compile(r"\b(ERROR|FATAL)\b")
    errorish = re.compile(r"Exception|Error|error:")
    for source in sources:
        path, offset = source if isinstance(source, tuple) else (source, None)
        try:
            with path.open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                end = handle.tell()
                handle.seek(max(offset or 0, end - 65536))
                lines = handle.read().decode("utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for pattern in (level, errorish):
            hits = [i for i, line in enumerate(lines) if pattern.search(line)]
            if hits:
                i = hits[-1]
                text = lines[i]
                if (
                    i + 1 < len(lines)
                    and lines[i + 1].strip()
                    and not lines[i + 1][:1].isspace()
                    and not lines[i + 1].startswith("[")
                ):
                    text += " " + lines[i + 1]
                return " ".join(text.split())[:300]
    return ""


def recorded_process_runs(state: dict[str, Any] | None, *markers: str) -> bool:
    """Whether the process a service's state file records (``pid``, ``create_time``) still
    runs and is that service: alive, not a zombie, not a reused pid, and its command line
    holds every marker (its main class and its own config file)."""
    if state is None or "pid" not in state:
        return False
    try:
        process = psutil.Process(int(state["pid"]))
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        created = state.get("create_time")
        if created is not None and abs(process.create_time() - float(created)) > 1.0:
            return False  # the pid was reused by another program
        cmdline = process.cmdline()
    except (psutil.Error, ValueError, TypeError):
        return False
    return all(marker in cmdline for marker in markers)


def is_running(pid: int) -> bool:
    """The process exists and has not exited (a zombie has)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def create_time(pid: int) -> float | None:
    """When the process started (recorded beside its pid, so a reused pid is told apart),
    or None when it is gone already (its start-up check then reports why)."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return None


def stop_recorded(
    home: Path,
    running_state: Callable[[], dict[str, Any] | None],
    timeout: float,
    then: Callable[[dict[str, Any] | None], None],
) -> None:
    """Stop a service of state directory ``home`` under its start/stop lock: the process
    its state records, when it runs (SIGTERM, SIGKILL after ``timeout``), then ``then``
    with the state it had (None: nothing ran) to leave the state files as the service
    wants them. A directory that was never created has nothing to stop."""
    if not home.exists():
        return
    with file_lock(home / ".lock"):
        state = running_state()
        if state is not None:
            terminate(int(state["pid"]), timeout=timeout)
        then(state)
