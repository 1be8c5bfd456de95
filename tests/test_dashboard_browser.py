"""The dashboard in a real browser: `streamlit run app.py` on a free localhost port, every page opened in
headless Chromium through Playwright, one small comparison run, a chart on screen and no exception."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
CHART = '[data-testid="stPlotlyChart"] .main-svg'  # drawn, not just its placeholder
PAGES = {"layer_weights": "Layer weights", "finetune_compare": "Fine-tune & compare",
         "param_change": "Parameter change", "shot_scaling": "Shot scaling", "results": "Results",
         "": "AutoFT Explorer"}

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian's chromium is not installed (apt-get install chromium; .ci/run does)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} not healthy after {timeout}s")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A dashboard server with its own result store; stopped (by its own pid) at the end."""
    tmp = tmp_path_factory.mktemp("dashboard")
    port = _free_port()
    env = {**os.environ, "AUTOFT_STORE": str(tmp / "results.sqlite")}
    log = (tmp / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--browser.gatherUsageStats", "false"], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", proc)
        yield f"http://127.0.0.1:{port}", tmp
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _settle(page, timeout: float = 180) -> None:
    """Wait until the script has stopped running (and stays stopped for a moment)."""
    deadline, quiet = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        running = page.locator('[data-test-script-state="running"], [data-test-script-state="rerunRequested"]').count()
        quiet = 0 if running else quiet + 1
        if quiet >= 4:
            return
        page.wait_for_timeout(300)
    raise TimeoutError("the page kept running")


def _no_exception(page, where: str) -> None:
    exceptions = page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, f"{where}: {exceptions.first.inner_text()}"


def test_every_page_and_a_comparison(server) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, tmp = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            for path, title in PAGES.items():  # a page URL first: a fresh server must serve it directly
                page.goto(f"{url}/{path}")
                expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible(timeout=120_000)
                _settle(page)
                _no_exception(page, path or "landing")
                if path == "layer_weights":  # computed on arrival: one bar chart per method and a heatmap
                    expect(page.locator(CHART).nth(3)).to_be_visible(timeout=60_000)
                page.screenshot(path=str(tmp / f"{path or 'landing'}.png"))
            expect(page.locator('[data-testid="stImage"]').first).to_be_visible()

            page.get_by_test_id("stSidebarUserContent").get_by_role("link", name="Fine-tune & compare").click()
            expect(page.get_by_role("heading", name="Fine-tune & compare", exact=True)).to_be_visible(timeout=60_000)
            for label, value in (("Epochs", "1"), ("Shots (total training examples)", "20")):
                field = page.get_by_label(label, exact=True)
                field.fill(value)
                field.press("Enter")
                _settle(page)
            page.get_by_role("button", name=re.compile(r"Run \d+ missing")).click()
            expect(page.locator(CHART).first).to_be_visible(timeout=240_000)
            _settle(page)
            _no_exception(page, "comparison")
            expect(page.get_by_role("button", name="All computed")).to_be_disabled()
            page.screenshot(path=str(tmp / "comparison.png"), full_page=True)
        finally:
            browser.close()
    from autoft_core.store import ResultStore

    runs = ResultStore(tmp / "results.sqlite").frame()
    assert len(runs) >= 2 and set(runs["epochs"]) == {1} and set(runs["shots"]) == {20}
