"""The running dashboard in a real browser: `saleslake dashboard` serves a small lake,
Debian's Chromium (driven by Playwright) loads it, the KPI text equals SQL over the same
lake, the server listens on loopback only, and it stops cleanly on SIGTERM.

Saves the page, per tab, under pytest's tmp_path (and as docs/dashboard.png, linked from the
README, with SALESLAKE_UPDATE_SCREENSHOT=1). Needs /usr/bin/chromium: `bash scripts/setup_browser.sh`.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import psutil
import pytest

from helpers import ROOT, build_gold_lake, free_port
from saleslake import api

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps calling out, which a closed
# network refuses (slowly).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_TIMEOUT = 120
RENDER_TIMEOUT_MS = 120_000
SCREENSHOT = ROOT / "docs" / "dashboard.png"
WIDTH = 1400


@pytest.fixture(scope="module")
def lake_home(tmp_path_factory) -> Path:
    return build_gold_lake(tmp_path_factory.mktemp("dashboard-browser"))


@pytest.fixture
def dashboard(lake_home, tmp_path):
    """`saleslake dashboard --port P` as a real process; yields (process, port)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALESLAKE_")}
    log = (tmp_path / "dashboard.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "saleslake.cli", "dashboard", "--port", str(port), "--home", str(lake_home)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_up(proc, port, tmp_path / "dashboard.log")
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def wait_until_up(proc: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"saleslake dashboard exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"the dashboard did not answer on 127.0.0.1:{port} within {START_TIMEOUT} s:\n{log.read_text()}")


def require_chromium() -> None:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium with `bash scripts/setup_browser.sh` "
            "(scripts/test.sh does it)"
        )


def listening_addresses(pid: int) -> set[str]:
    """Addresses the process and its children listen on (the CLI runs streamlit as a child)."""
    root = psutil.Process(pid)
    found = set()
    for process in [root, *root.children(recursive=True)]:
        for conn in process.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                found.add(conn.laddr.ip)
    return found


def other_local_addresses() -> list[str]:
    """This machine's IPv4 addresses that are not loopback (where a 0.0.0.0 bind would answer)."""
    return [
        a.address
        for addrs in psutil.net_if_addrs().values()
        for a in addrs
        if a.family.name == "AF_INET" and not ipaddress.ip_address(a.address).is_loopback
    ]


def expected_revenue(home: Path) -> str:
    (revenue,) = api.query("SELECT sum(net_sales) AS revenue FROM gold.fact_sales", api.settings(home=home)).to_pylist()
    cents = Decimal(revenue["revenue"]).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return f"${cents:,}"


def metric_value(page, label: str) -> str:
    card = page.get_by_test_id("stMetric").filter(
        has=page.get_by_test_id("stMetricLabel").get_by_text(label, exact=True)
    )
    return card.get_by_test_id("stMetricValue").inner_text().strip()


def full_page_screenshot(page, path: Path) -> None:
    """Streamlit scrolls inside the page, so a full-page shot needs a viewport as tall as
    the content."""
    height = page.evaluate("() => Math.max(...Array.from(document.querySelectorAll('*'), e => e.scrollHeight))")
    page.set_viewport_size({"width": WIDTH, "height": min(int(height), 4000)})
    page.wait_for_timeout(1500)  # charts re-layout to the new size
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": WIDTH, "height": 900})


def test_dashboard_in_chromium_shows_the_lake_and_listens_on_loopback_only(dashboard, lake_home, tmp_path):
    require_chromium()
    from playwright.sync_api import sync_playwright

    proc, port = dashboard
    addresses = listening_addresses(proc.pid)
    assert addresses and all(ipaddress.ip_address(a).is_loopback for a in addresses), addresses
    for address in other_local_addresses():
        with pytest.raises(OSError):  # refused: nothing listens there
            urllib.request.urlopen(f"http://{address}:{port}/_stcore/health", timeout=3)

    revenue = expected_revenue(lake_home)
    quarantined = api.query("SELECT count(*) AS n FROM silver.quarantine", api.settings(home=lake_home)).to_pylist()[0][
        "n"
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            viewport={"width": WIDTH, "height": 900},
        )  # a fresh, empty profile
        try:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded", timeout=RENDER_TIMEOUT_MS)
            page.get_by_test_id("stMetricValue").nth(5).wait_for(timeout=RENDER_TIMEOUT_MS)
            page.get_by_test_id("stVegaLiteChart").first.wait_for(timeout=RENDER_TIMEOUT_MS)
            assert metric_value(page, "Revenue") == revenue
            assert page.get_by_test_id("stException").count() == 0
            full_page_screenshot(page, tmp_path / "dashboard.png")
            if os.environ.get("SALESLAKE_UPDATE_SCREENSHOT") == "1":  # a test run leaves the work tree alone
                shutil.copyfile(tmp_path / "dashboard.png", SCREENSHOT)

            page.get_by_role("tab", name="Data quality").click()
            page.get_by_text("Quarantine by reason over time").wait_for(timeout=RENDER_TIMEOUT_MS)
            assert metric_value(page, "Quarantined rows") == f"{quarantined:,}"
            full_page_screenshot(page, tmp_path / "dashboard-quality.png")
            page.get_by_role("tab", name="Pipeline health").click()
            page.get_by_text("Freshness per source").wait_for(timeout=RENDER_TIMEOUT_MS)
            full_page_screenshot(page, tmp_path / "dashboard-pipeline.png")
            assert page.get_by_test_id("stException").count() == 0
        finally:
            browser.close()
    assert SCREENSHOT.stat().st_size < 1_000_000

    children = psutil.Process(proc.pid).children(recursive=True)
    assert children, "the streamlit server should run as a child of the CLI"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"left running after SIGTERM: {alive}"
