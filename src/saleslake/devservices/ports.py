"""What the local services share: loopback port checks, their state-file lock and their
secret files."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import psutil

HOST = "127.0.0.1"


def port_holder(port: int) -> str | None:
    """None when ``port`` on 127.0.0.1 can be bound (as servers do, with SO_REUSEADDR);
    otherwise who holds it: ``"by <name> (pid N)"`` or ``"by another program"``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
        return None
    except OSError:
        owner = _listener(port)
        return f"by {owner}" if owner else "by another program"
    finally:
        sock.close()


def _listener(port: int) -> str:
    """Best effort 'name (pid N)' of the program listening on ``port``."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                try:
                    return f"{psutil.Process(conn.pid).name()} (pid {conn.pid})"
                except psutil.Error:
                    return f"pid {conn.pid}"
    except (psutil.Error, OSError):
        pass
    return ""


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive flock on ``path`` (created with its folder): one start/stop at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_secret(path: Path, value: str) -> None:
    """Write ``value`` to ``path`` readable by its owner only (0600), atomically: no moment
    when the file exists with other permissions or half written."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    os.chmod(tmp, 0o600)
    tmp.replace(path)
