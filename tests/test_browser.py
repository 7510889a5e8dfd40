"""Headless Chromium (Debian's, driven by Playwright): load the page, click through the tabs,
run a TTS request, save a screenshot under test-artifacts/."""

import shutil
from pathlib import Path

import pytest

from tests.app_helpers import ROOT, start_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (apt-get install chromium)")
def test_page_tabs_and_tts(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    proc, url = start_app(tmp_path)
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url, wait_until="domcontentloaded", timeout=120_000)
            page.get_by_role("tab", name="Chat").wait_for(timeout=60_000)
            for name in ["Voice conversion", "Voices", "Status", "Text to speech"]:
                page.get_by_role("tab", name=name).click()
                page.wait_for_timeout(300)
            assert page.get_by_role("button", name="Generate").is_visible()
            page.get_by_role("button", name="Generate").click()
            page.get_by_text("RTF").first.wait_for(timeout=180_000)  # the metrics line of a finished request
            page.screenshot(path=str(artifacts / "ui-tts.png"), full_page=True)
            page.get_by_role("tab", name="Chat").click()
            page.wait_for_timeout(500)
            page.screenshot(path=str(artifacts / "ui-chat.png"), full_page=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert (artifacts / "ui-tts.png").stat().st_size > 10_000
