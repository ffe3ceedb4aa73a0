"""Run the dashboard: ``streamlit run app.py`` as a child of this interpreter.

Loopback only unless asked (the dashboard has no login), a busy port is one clear error
before anything starts, usage statistics are off (the network may be closed, and users
expect it), and stopping the parent (Ctrl-C, SIGTERM) stops the server with it.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from saleslake.errors import UserError

APP = Path(__file__).with_name("app.py")
STOP_TIMEOUT = 10.0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def check_address(host: str, allow_remote: bool) -> None:
    if not is_loopback(host) and not allow_remote:
        raise UserError(
            f"--host {host} is not a loopback address and the dashboard has no login: anyone who can "
            "reach it would see the sales data; add --allow-remote to serve it there anyway"
        )


def check_port_free(host: str, port: int) -> None:
    """Fail with one line when ``host:port`` cannot be listened on (busy, or no such address)."""
    if not 1 <= port <= 65535:
        raise UserError(f"--port must be between 1 and 65535, not {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # as the server will: a port left in TIME_WAIT by an earlier server is free
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserError(
                    f"port {port} on {host} is already in use (another dashboard?); choose another with --port"
                ) from None
            raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def streamlit_command(host: str, port: int, headless: bool = True) -> list[str]:
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true" if headless else "false",
        "--browser.gatherUsageStats",
        "false",
        "--browser.serverAddress",
        host,  # the URL it prints is the one it serves
        "--server.fileWatcherType",
        "none",  # an installed app: nothing to reload on save
        "--client.toolbarMode",
        "minimal",
    ]


def streamlit_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["SALESLAKE_HOME"] = str(home)
    env["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] = "false"
    return env


def serve(home: Path, host: str, port: int, headless: bool = True, allow_remote: bool = False) -> int:
    """Serve until the server exits or this process is told to stop; the server's exit
    code (0 after Ctrl-C or SIGTERM)."""
    check_address(host, allow_remote)
    check_port_free(host, port)
    proc = subprocess.Popen(streamlit_command(host, port, headless), env=streamlit_env(home))
    stopped = threading.Event()

    def stop(*_) -> None:
        stopped.set()
        proc.terminate()

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, stop)
    try:
        code = proc.wait()
        return 0 if stopped.is_set() else code
    except KeyboardInterrupt:  # Ctrl-C is how a server is stopped, not a failure
        _stop(proc)
        return 0
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
