"""`saleslake dashboard` before it starts a server (a real CLI process): loopback only
unless asked, a busy port is one clear line (exit 1)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from helpers import free_port

CLI = [sys.executable, "-m", "saleslake.cli"]


def saleslake(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALESLAKE_")}
    env["COLUMNS"] = "200"
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def test_cli_busy_port_exits_1_with_one_line(tmp_path):
    port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        proc = saleslake("dashboard", "--port", str(port), "--home", str(tmp_path / "lake"), cwd=tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1, proc.stderr
    assert lines == [
        f"error: port {port} on 127.0.0.1 is already in use (another dashboard?); choose another with --port"
    ]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_cli_refuses_a_public_address_unless_asked(tmp_path):
    proc = saleslake(
        "dashboard", "--host", "0.0.0.0", "--port", str(free_port()), "--home", str(tmp_path / "lake"), cwd=tmp_path
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1
    assert "not a loopback address" in lines[0] and "--allow-remote" in lines[0]
