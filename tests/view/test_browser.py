"""`factory view` in a real headless browser: Debian's Chromium driven by Playwright (no browser download).
Clicks through funnel -> rejected by language -> a trace -> its verdicts, and checks what is on screen."""

from __future__ import annotations

import os
import re
import shutil
import threading
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian's chromium is not installed (make setup installs it as root)")
# The flags a closed network needs: without them Chromium keeps trying to reach Google's services.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def server(view_run):
    from werkzeug.serving import make_server

    from factory.view import create_app

    srv = make_server("127.0.0.1", 0, create_app(view_run), threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.dialogs = []
        page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
        yield page
        browser.close()


def test_funnel_to_language_rejects_to_a_trace_and_its_verdicts(server, page, tmp_path):
    page.goto(server + "/")
    assert page.locator("#funnel").is_visible()
    page.locator("#funnel a", has_text="language").click()
    assert "reason=language" in page.url
    count = page.locator("#count").inner_text()
    rows = page.locator("#traces tr").count() - 1
    assert count.startswith(f"{rows} traces match") and rows > 0
    assert all(t == "language" for t in page.locator("#traces .rejected").all_inner_texts())
    page.locator("#traces a").first.click()
    assert "/trace/" in page.url
    assert page.locator("#reject-reason").inner_text() == "rejected by language"
    language = page.locator("#verdicts").get_by_role("row", name=re.compile(r"^language fail"))
    assert "language_mixing" in language.inner_text()
    assert page.locator("#samples .card").count() == 3
    shot = Path(os.environ.get("FACTORY_VIEW_SCREENSHOT") or tmp_path / "trace.png")
    page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 10_000


def test_hostile_model_output_runs_nothing_in_the_browser(server, page):
    page.goto(server + "/traces?q=pwned")
    page.locator("#traces a").first.click()
    page.wait_for_load_state("load")
    assert page.evaluate("window.pwned === undefined"), "a script, handler or link from a trace ran"
    assert page.dialogs == []
    assert page.locator("#problem img, #reasoning img, #reasoning script, #reasoning a").count() == 0
    assert "<script>window.pwned" in page.locator("#reasoning pre").inner_text()
    assert "javascript:window.pwned" in page.locator("#reasoning pre").inner_text()
