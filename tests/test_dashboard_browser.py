"""The dashboard in a real browser: `streamlit run app.py` on a free localhost port, driven through
Playwright in Debian's headless Chromium. Runs a small table (2 methods × 2 shifts × 1 seed, 1 epoch) from
the Results page and checks its downloaded CSV; downloads a layer-weights HTML export and checks that every
layer name is drawn inside the figure; screenshots every page at 900 and 1500 px wide (in the test's
temporary folder, `screens/`, or $AUTOFT_SCREENSHOTS)."""
from __future__ import annotations

import io
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

import pandas as pd
import pytest

from autoft_core.config import code_version
from autoft_core.layers import partition
from autoft_core.setups import get_setup
from ui.layout import PAGES

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
CHART = '[data-testid="stPlotlyChart"] .main-svg'  # drawn, not just its placeholder
WIDTHS = (900, 1500)
TIMEOUT_MS = 240_000

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
    env = {**os.environ, "AUTOFT_STORE": str(tmp / "results.sqlite"), "OMP_NUM_THREADS": "1"}
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


@pytest.fixture(scope="module")
def session(server):
    """One browser tab (one dashboard session) for the module, opened on a page URL of the fresh server,
    with quick methods chosen (the choice persists across pages)."""
    from playwright.sync_api import sync_playwright

    url, _ = server
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = chromium.new_page(viewport={"width": WIDTHS[0], "height": 1200}, accept_downloads=True)
            _open(page, url, "finetune_compare", "Fine-tune & compare")
            _choose(page, "Methods", ["full", "linear-probe"])
            yield page
        finally:
            chromium.close()


def _settle(page, timeout: float = 240) -> None:
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
    problems = page.locator('[data-testid="stException"], [data-testid="stAlertContentError"]')
    assert problems.count() == 0, f"{where}: {problems.first.inner_text()}"


def _open(page, url: str, path: str, title: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{url}/{path}")
    expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible(timeout=TIMEOUT_MS)
    _settle(page)


def _set_number(page, label: str, value: int) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Enter")
    _settle(page)


def _choose(page, label: str, values: list[str]) -> None:
    """Make a multiselect hold exactly `values`."""
    widget = page.get_by_test_id("stMultiSelect").filter(has=page.get_by_label(label, exact=True))
    for tag in widget.locator("[data-tag] span[title]").all_inner_texts():
        if tag not in values:
            widget.get_by_role("button", name=f"Remove {tag}").click()
            _settle(page)
    for value in values:
        if value not in widget.locator("[data-tag] span[title]").all_inner_texts():
            widget.get_by_label(label, exact=True).fill(value)
            page.get_by_role("option", name=value, exact=True).click()
            _settle(page)
    page.keyboard.press("Escape")


def _main_button(page, label: str):
    """The first download button called `label` in the page body (the sidebar has the page report's)."""
    return page.get_by_test_id("stMain").get_by_test_id("stDownloadButton").filter(has_text=label).first


def _download(page, button) -> Path:
    with page.expect_download() as info:
        button.click()
    target = Path(info.value.path())
    return target.rename(target.with_name(info.value.suggested_filename))


def _nav(page, title: str) -> None:
    """Go to a page through the sidebar's navigation (no reload), and wait for its heading and charts."""
    from playwright.sync_api import expect

    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True).click()
    heading = "AutoFT Explorer" if title == PAGES[0][1] else title
    expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible(timeout=TIMEOUT_MS)
    _settle(page)


def test_run_a_small_table_and_download_its_csv(server, session) -> None:
    from playwright.sync_api import expect

    _, tmp = server
    page = session
    nav = page.get_by_test_id("stSidebarNav").inner_text()
    assert all(title in nav for _, title, _ in PAGES) and "finetune" not in nav  # titles, not file names
    page.set_viewport_size({"width": 1500, "height": 1400})
    _nav(page, "Results")
    _set_number(page, "epochs", 1)
    _set_number(page, "shots", 20)
    _choose(page, "Shifts", ["feature", "output"])
    _choose(page, "Methods", ["full", "linear-probe"])
    page.get_by_role("button", name="Run 4 missing").click()
    expect(page.get_by_text(re.compile(r"Ran 4 runs in"))).to_be_visible(timeout=TIMEOUT_MS)
    _settle(page)
    _no_exception(page, "the table run")
    expect(page.get_by_role("button", name="All computed")).to_be_disabled()
    csv = _download(page, _main_button(page, "CSV"))
    text = csv.read_text()
    facts = dict(line[2:].split(": ", 1) for line in text.splitlines() if line.startswith("# "))
    assert facts["title"] == "Table 1" and facts["setup"] == "digits" and facts["seeds"] == "0"
    assert "epochs 1" in facts["recipe"] and "shots 20" in facts["recipe"]
    assert facts["engine code version"] == code_version()
    assert "digits" in csv.name and "e1-n20" in csv.name and csv.suffix == ".csv"
    table = pd.read_csv(io.StringIO(text), comment="#").set_index("method")
    assert sorted(table.index) == ["full", "linear-probe"]
    from autoft_core.store import ResultStore

    stored = ResultStore(tmp / "results.sqlite").frame(setup="digits").set_index(["method", "shift"])
    for method in table.index:
        for shift in ("feature", "output"):
            column = f"{shift}-level mean %"
            assert pd.api.types.is_float_dtype(table[column])
            assert table.loc[method, column] == pytest.approx(100 * stored.loc[(method, shift), "test_acc"])
    report = _download(page, page.get_by_test_id("stSidebar").get_by_test_id("stDownloadButton")).read_text()
    assert "<h1>Results</h1>" in report and "<h2>Table 1</h2>" in report
    assert "python -m autoft_core sweep --setup digits --shifts feature,output" in report
    assert "python -m autoft_core table --setup digits" in report and "Input-level" not in report


def test_every_page_at_900_and_1500_px(server, session) -> None:
    """After the table run: pages show its runs (the session keeps its 1-epoch, 20-shot recipe)."""
    _, tmp = server
    screens = Path(os.environ.get("AUTOFT_SCREENSHOTS") or tmp / "screens")
    screens.mkdir(parents=True, exist_ok=True)
    page = session
    for path, title, _ in PAGES:
        _nav(page, title)
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 2000})
            page.wait_for_timeout(500)  # charts follow the new width
            _no_exception(page, f"{title} at {width} px")
            page.screenshot(path=str(screens / f"{width}-{Path(path).stem}.png"), full_page=True)
        page.set_viewport_size({"width": WIDTHS[0], "height": 1200})
    assert {p.name for p in screens.glob("*.png")} >= {f"{w}-{Path(p).stem}.png" for w in WIDTHS for p, *_ in PAGES}
    print(f"screenshots in {screens}")


def test_layer_weights_html_export_shows_every_layer_name(session) -> None:
    page = session
    page.set_viewport_size({"width": 1500, "height": 1400})
    _nav(page, "Layer weights")
    page.locator(CHART).first.wait_for(timeout=TIMEOUT_MS)
    html = _download(page, _main_button(page, "HTML"))
    assert html.suffix == ".html" and "Layer-weights" in html.name and "digits" in html.name
    page.goto(html.as_uri())
    page.locator(".main-svg").first.wait_for(timeout=60_000)
    boxes = page.evaluate("""() => {
        const svg = document.querySelector('.main-svg').getBoundingClientRect();
        return [...document.querySelectorAll('.xtick text')].map(t => {
            const b = t.getBoundingClientRect();
            return {text: t.textContent, left: b.left - svg.left, right: b.right - svg.left,
                    top: b.top - svg.top, bottom: b.bottom - svg.top, width: svg.width, height: svg.height};
        });
    }""")
    names = [layer.name.replace(".", " ") for layer in partition(get_setup("digits").source_model("output"), "module")]
    assert [b["text"] for b in boxes] == names
    for box in boxes:  # inside the figure: the margins hold the slanted names
        assert box["left"] >= 0 and box["top"] >= 0, box
        assert box["right"] <= box["width"] and box["bottom"] <= box["height"], box
