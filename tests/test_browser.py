"""Headless Chromium (Debian's, driven by Playwright) against the real app on the tiny profile:
load the page (the voice preview is filled), click through the tabs, run a TTS request (its progress
shown once, on the player), chat by typing, and talk hands-free
through a fake microphone (Chromium plays a WAV file as the capture device). Screenshots are
saved under test-artifacts/."""

import shutil

import numpy as np
import pytest
import soundfile as sf

from tests.app_helpers import ROOT, start_app
from tests.audio_helpers import voiced

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT = 180_000  # ms; the first request loads the tiny models

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (apt-get install chromium); "
                                                        "the headless-browser tests need it")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    sync_api = pytest.importorskip("playwright.sync_api")
    tmp = tmp_path_factory.mktemp("browser")
    # what the fake microphone says: room noise, ~1.2 s of speech-like sound, then a long pause
    rng = np.random.default_rng(0)
    speech = np.concatenate([np.zeros(24000), voiced(1.2, seed=5, amp=0.4), np.zeros(64000)])
    speech = speech + 0.003 * rng.standard_normal(speech.size)
    sf.write(tmp / "mic.wav", (np.clip(speech, -1, 1) * 32767).astype(np.int16), 16000, subtype="PCM_16")
    args = ARGS + ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                   f"--use-file-for-fake-audio-capture={tmp / 'mic.wav'}%noloop"]
    proc, url = start_app(tmp)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        with sync_api.sync_playwright() as p:
            chromium = p.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
            context = chromium.new_context(viewport={"width": 1280, "height": 900}, permissions=["microphone"])
            page = context.new_page()
            page.goto(url, wait_until="domcontentloaded", timeout=120_000)
            page.get_by_role("tab", name="Chat").wait_for(timeout=60_000)
            yield page
            chromium.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# Every 20 ms: which components show a progress indicator (Gradio's status tracker, not hidden, with text).
WATCH_PROGRESS = """() => {
  window.__progress = {max: 0, where: []};
  window.__watch = setInterval(() => {
    const shown = Array.from(document.querySelectorAll('[data-testid="status-tracker"]'))
      .filter(e => !e.classList.contains('hide') && e.offsetParent !== null && e.innerText.trim())
      .map(e => (e.closest('[id]') || {}).id || '?');
    window.__progress.max = Math.max(window.__progress.max, shown.length);
    shown.forEach(id => { if (!window.__progress.where.includes(id)) window.__progress.where.push(id); });
  }, 20);
}"""
STOP_WATCH = "() => { clearInterval(window.__watch); return window.__progress; }"


def test_voice_preview_is_filled_on_load(browser):
    page = browser
    page.get_by_role("tab", name="Voices").click()
    selected = page.locator("#voice-info").get_by_text("flite-")  # the library's selected voice, described
    selected.first.wait_for(timeout=30_000)
    link = page.locator("#voice-preview [data-testid='download-link']")
    link.wait_for(state="attached", timeout=30_000)
    assert ".wav" in (link.get_attribute("href") or "")  # the preview player holds the voice's audio


def test_tabs_and_tts(browser):
    page = browser
    for name in ["Voice conversion", "Voices", "Status", "Text to speech"]:
        page.get_by_role("tab", name=name).click()
        page.wait_for_timeout(300)
    assert page.get_by_text("Every model this profile uses is available").count() >= 1  # the status tab rendered
    page.evaluate(WATCH_PROGRESS)
    page.get_by_role("button", name="Generate").click()
    page.locator("#tts-info").get_by_text("RTF").wait_for(timeout=TIMEOUT)  # the metrics line of a finished request
    progress = page.evaluate(STOP_WATCH)
    assert progress["max"] == 1 and progress["where"] == ["tts-audio"], progress  # once, where the result appears
    assert page.get_by_text("Spoken text").first.is_visible()
    assert page.locator("#tts-info").get_by_text("models loaded in").count() == 1  # loading: its own line
    # a second request: the old result is cleared at once, progress again shows only on the player
    page.evaluate(WATCH_PROGRESS)
    page.get_by_role("button", name="Generate").click()
    page.wait_for_function("() => !document.querySelector('#tts-info').innerText.includes('RTF')", timeout=30_000)
    page.locator("#tts-info").get_by_text("RTF").wait_for(timeout=TIMEOUT)
    progress = page.evaluate(STOP_WATCH)
    assert progress["max"] <= 1 and set(progress["where"]) <= {"tts-audio"}, progress
    assert page.locator("#tts-info").get_by_text("models loaded in").count() == 0  # nothing loaded this time
    page.screenshot(path=str(ARTIFACTS / "ui-tts.png"), full_page=True)
    assert (ARTIFACTS / "ui-tts.png").stat().st_size > 10_000


def test_typed_chat_turn(browser):
    page = browser
    page.get_by_role("tab", name="Chat").click()
    box = page.get_by_placeholder("Type a message and press Enter")
    box.fill("Hello, who are you?")
    box.press("Enter")
    chat = page.locator("#chatbot")
    chat.get_by_text("Hello, who are you?").wait_for(timeout=30_000)
    page.locator("#latency").get_by_text("RTF").wait_for(timeout=TIMEOUT)
    assert box.input_value() == ""  # the message box is cleared
    for close in page.locator(".toast-close").all():  # the tiny models' "cut off at its length limit" notes
        close.click()
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / "ui-chat.png"), full_page=True)


def test_hands_free_microphone_turn(browser):
    """Streaming microphone -> server-side VAD -> a chat turn, with no click after 'Record'."""
    page = browser
    page.get_by_role("tab", name="Chat").click()
    page.get_by_role("button", name="Clear conversation").click()
    page.locator("#handsfree").get_by_role("button", name="Record").click()
    page.locator("#vad-state").get_by_text("heard").wait_for(timeout=60_000)
    chat = page.locator("#chatbot")
    try:
        chat.get_by_text("(spoken)").first.wait_for(timeout=TIMEOUT)
        page.locator("#latency").get_by_text("RTF").wait_for(timeout=TIMEOUT)  # the turn finished
    finally:
        page.screenshot(path=str(ARTIFACTS / "ui-handsfree.png"), full_page=True)
    assert chat.inner_text().count("(spoken)") == 1  # one utterance, one turn
    assert "…" not in chat.inner_text()  # transcript and reply text arrived


def test_login_form_then_the_app(browser, tmp_path):
    """With a login required, the browser first sees only the sign-in form; a wrong password is
    refused there, the right one opens the app."""
    proc, url = start_app(tmp_path, env={"SPEECHGPT_AUTH": "ann:secret words"})
    context = browser.context.browser.new_context()  # the same Chromium, a fresh session
    try:
        page = context.new_page()
        page.goto(url, wait_until="domcontentloaded", timeout=120_000)
        assert page.title() == "Sign in" and "SpeechGPT" not in page.content()
        page.get_by_placeholder("User").fill("ann")
        page.get_by_placeholder("Password").fill("wrong")
        page.get_by_role("button", name="Sign in").click()
        page.get_by_text("Wrong user or password").wait_for(timeout=30_000)
        page.get_by_placeholder("Password").fill("secret words")
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("tab", name="Chat").wait_for(timeout=60_000)
        assert "SpeechGPT-Gen assistant" in page.title()
    finally:
        context.close()
        proc.terminate()
        proc.wait(timeout=30)
