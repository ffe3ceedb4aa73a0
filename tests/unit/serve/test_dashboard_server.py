"""`saleslake dashboard` before it starts a server: loopback only unless asked, a busy
port is one clear line (exit 1), usage statistics off."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from helpers import free_port

from saleslake.errors import UserError
from saleslake.serve.dashboard import server

CLI = [sys.executable, "-m", "saleslake.cli"]


def saleslake(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALESLAKE_")}
    env["COLUMNS"] = "200"
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


@pytest.mark.unit
def test_only_loopback_addresses_count_as_local():
    assert all(server.is_loopback(h) for h in ("127.0.0.1", "127.8.9.1", "::1", "localhost"))
    assert not any(server.is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.10", "example.org"))
    server.check_address("0.0.0.0", allow_remote=True)  # asked for explicitly
    with pytest.raises(UserError, match="--allow-remote"):
        server.check_address("0.0.0.0", allow_remote=False)


@pytest.mark.unit
def test_streamlit_runs_headless_on_the_given_address_without_usage_statistics(tmp_path):
    cmd = server.streamlit_command("127.0.0.1", 8599)
    options = dict(zip(cmd[5::2], cmd[6::2]))
    assert cmd[:5] == [sys.executable, "-m", "streamlit", "run", str(server.APP)]
    assert options["--server.address"] == "127.0.0.1" and options["--server.port"] == "8599"
    assert options["--server.headless"] == "true" and options["--browser.gatherUsageStats"] == "false"
    env = server.streamlit_env(tmp_path / "lake")
    assert env["SALESLAKE_HOME"] == str(tmp_path / "lake") and env["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] == "false"


@pytest.mark.unit
def test_a_busy_port_is_a_user_error():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(UserError, match=f"port {port} on 127.0.0.1 is already in use"):
            server.check_port_free("127.0.0.1", port)
    server.check_port_free("127.0.0.1", port)  # free again
    with pytest.raises(UserError, match="between 1 and 65535"):
        server.check_port_free("127.0.0.1", 70000)


@pytest.mark.integration
def test_cli_busy_port_exits_1_with_one_line(tmp_path):
    port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        proc = saleslake("dashboard", "--port", str(port), "--home", str(tmp_path / "lake"), cwd=tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1, proc.stderr
    assert lines == [f"error: port {port} on 127.0.0.1 is already in use (another dashboard?); choose another with --port"]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


@pytest.mark.integration
def test_cli_refuses_a_public_address_unless_asked(tmp_path):
    proc = saleslake("dashboard", "--host", "0.0.0.0", "--port", str(free_port()), "--home", str(tmp_path / "lake"),
                     cwd=tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1
    assert "not a loopback address" in lines[0] and "--allow-remote" in lines[0]
