"""Running the programs a local service needs (installers, Maven, initdb, Kafka's storage tool)."""

from __future__ import annotations

import subprocess
from typing import IO, Any


def run_logged(cmd: list[str], log: IO[str], *, timeout: float, **options: Any) -> subprocess.CompletedProcess:
    """Run ``cmd`` with no input and its output, stdout and stderr interleaved as a terminal
    shows them, appended to ``log``: the file a failure's one-line message points to. The
    caller reads the exit status (``check=False``); ``options`` go to :func:`subprocess.run`
    (``cwd``, ``env``, ...)."""
    return subprocess.run(
        cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, timeout=timeout, check=False, **options
    )
