"""The dashboard server's checks before it starts: loopback only unless asked, a busy port
is a user error, usage statistics off."""

from __future__ import annotations

import socket
import sys

import pytest

from saleslake.errors import UserError
from saleslake.serve.dashboard import server


def test_only_loopback_addresses_count_as_local():
    assert all(server.is_loopback(h) for h in ("127.0.0.1", "127.8.9.1", "::1", "localhost"))
    assert not any(server.is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.10", "example.org"))
    server.check_address("0.0.0.0", allow_remote=True)  # asked for explicitly
    with pytest.raises(UserError, match="--allow-remote"):
        server.check_address("0.0.0.0", allow_remote=False)


def test_streamlit_runs_headless_on_the_given_address_without_usage_statistics(tmp_path):
    cmd = server.streamlit_command("127.0.0.1", 8599)
    options = dict(zip(cmd[5::2], cmd[6::2]))
    assert cmd[:5] == [sys.executable, "-m", "streamlit", "run", str(server.APP)]
    assert options["--server.address"] == "127.0.0.1" and options["--server.port"] == "8599"
    assert options["--server.headless"] == "true" and options["--browser.gatherUsageStats"] == "false"
    env = server.streamlit_env(tmp_path / "lake")
    assert env["SALESLAKE_HOME"] == str(tmp_path / "lake") and env["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] == "false"


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
