"""Issue 15 in-process: the UI's settings checks, voice choices across sessions, one bounded copy
of every output, temporary folders of dead processes, the login throttle's schedule."""

from __future__ import annotations

import os
import subprocess
import sys

import gradio as gr
import numpy as np
import pytest
import soundfile as sf

from app import server
from app.security import LoginThrottle, SecurityGate, SecuritySettings
from app.ui import UI, build_demo
from engine.config import REPO_ROOT, load_config
from tests.app_helpers import tiny_engine
from tests.audio_helpers import voiced


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    return UI(tiny_engine(), out_dir=tmp_path_factory.mktemp("out"), live_audio=False)


@pytest.mark.parametrize("knobs, match", [
    (dict(guidance="nan"), "finite"),
    (dict(guidance=float("nan")), "finite"),
    (dict(seed=1e30), "seed"),
    (dict(steps=1e9), "steps"),
    (dict(top_p=-1), "top-p"),
    (dict(temperature="hot"), "number"),
])
def test_bad_settings_are_refused_in_our_words(ui, knobs, match):
    with pytest.raises(gr.Error, match=match) as err:
        list(ui.tts("Hello.", "flite-slt", **knobs))
    assert "Something went wrong" not in err.value.message


def test_a_lone_surrogate_or_an_overlong_message_is_refused_in_our_words(ui):
    with pytest.raises(gr.Error, match="surrogate"):
        list(ui.chat_text("hi \ud800", "flite-slt", None, [], None))
    with pytest.raises(gr.Error, match="max_chat_chars"):
        list(ui.chat_text("word " * 1000, "flite-slt", None, [], None))


def test_a_voice_added_after_a_page_loaded_can_be_chosen_there(ui, tmp_path):
    demo = build_demo(ui.engine)  # the page another session loaded earlier
    clip = tmp_path / "fresh.wav"
    sf.write(clip, np.concatenate([voiced(1.3, seed=9), np.zeros(2000)]), 16000)
    ui.add_voice("fresh1", str(clip), "", False)
    try:
        dropdowns = [b for b in demo.blocks.values() if isinstance(b, gr.Dropdown)]
        assert len(dropdowns) == 4
        for d in dropdowns:
            assert d.preprocess("fresh1") == "fresh1"  # today: "Value: fresh1 is not in the list of choices"
        assert "fresh1" in ui.current_picker_choices("fresh1")["choices"]  # opening a list fetches the current voices
    finally:
        ui.engine.voices.delete("fresh1")


def test_outputs_are_one_bounded_copy_in_gradios_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    engine = tiny_engine()
    old = engine.config.server.output_cache_mb
    engine.config.server.output_cache_mb = 0.2  # ~200 kB: about three 1 s clips
    try:
        page = UI(engine, live_audio=False)
        assert page.out_dir.parent == tmp_path / "gradio"  # inside Gradio's cache: served from there, not copied
        paths = [page.out_file(np.full(16000, 0.1, np.float32), 16000, "t") for _ in range(8)]
        total = sum(p.stat().st_size for p in page.out_dir.iterdir())
        assert os.path.exists(paths[-1]) and total <= 0.2 * 2**20
        page.close()
        assert not page.out_dir.exists()
    finally:
        engine.config.server.output_cache_mb = old


def test_temporary_folders_of_dead_processes_are_removed_at_start(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    (tmp_path / f"speechgpt-gen-web-{dead}" / "abc").mkdir(parents=True)
    (tmp_path / f"speechgpt-gen-web-{dead}" / "abc" / "upload.wav").write_bytes(b"x" * 1000)
    (tmp_path / "speechgpt-gen-web-1").mkdir()  # pid 1 is alive: kept
    mine = server.private_temp_dir(tmp_path)
    assert mine.name == f"speechgpt-gen-web-{os.getpid()}" and mine.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, "speechgpt-gen-web-1"])


def test_user_data_is_outside_the_checkout():
    for profile in ["default", "tiny"]:
        cfg = load_config(profile)
        voices = cfg.resolve_path(cfg.paths.voices_dir)
        assert REPO_ROOT not in voices.parents, (profile, voices)


def test_credentials_from_the_environment():
    assert server.parse_auth(None, None, "ann:one\nbob:two\n") == [("ann", "one"), ("bob", "two")]
    with pytest.raises(SystemExit, match="user:password") as err:
        server.parse_auth(None, None, "ann:")
    assert "ann:" not in str(err.value)  # the bad line (maybe a password) is not echoed whole


def test_the_login_throttle_doubles_the_wait_and_forgets_on_success():
    now = [100.0]
    t = LoginThrottle(free_attempts=3, max_delay_s=8, clock=lambda: now[0])
    for _ in range(3):
        assert t.wait("1.2.3.4") == 0
        t.failed("1.2.3.4")
    assert t.wait("1.2.3.4") == pytest.approx(1.0) and t.wait("5.6.7.8") == 0  # per client
    waits = []
    for _ in range(5):
        now[0] += t.wait("1.2.3.4")
        t.failed("1.2.3.4")
        waits.append(t.wait("1.2.3.4"))
    assert waits == [2.0, 4.0, 8.0, 8.0, 8.0]
    t.succeeded("1.2.3.4")
    assert t.wait("1.2.3.4") == 0


def test_the_gate_refuses_an_oversized_body_before_reading_it():
    import asyncio

    reached = []

    async def app(scope, receive, send):
        reached.append(scope["path"])

    async def receive():
        raise AssertionError("the body was read")

    sent = []

    async def send(message):
        sent.append(message)

    gate = SecurityGate(app, SecuritySettings(max_upload_bytes=1000, max_request_bytes=100))
    scope = {"type": "http", "path": "/gradio_api/queue/join", "method": "POST", "headers": [(b"content-length", b"8000000")]}
    asyncio.run(gate(scope, receive, send))
    assert reached == [] and sent[0]["status"] == 413 and b"max_request_mb" in sent[1]["body"]


def test_unexpected_errors_show_no_server_detail():
    from app.ui import readable

    err = readable(FileNotFoundError(2, "No such file or directory", "/srv/secret/upload.wav"))
    assert "FileNotFoundError" in err.message and "/srv" not in err.message


def test_the_bearer_api_passes_the_login_gate_keeps_the_size_limits_and_throttles_wrong_tokens():
    """/v1 (the OpenAI-compatible API) checks its own Bearer token: no browser login is asked of it,
    but its bodies are limited (multipart as uploads) and a refused token counts as a failed login."""
    import asyncio
    import json

    reached = []

    async def app(scope, receive, send):  # stands for the API: 401 unless the token is "good"
        reached.append(scope["path"])
        auth = dict(scope["headers"]).get(b"authorization", b"")
        status = 200 if auth == b"Bearer good" else 401
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    def call(gate, path, headers=(), method="GET"):
        sent = []

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "path": path, "method": method, "headers": list(headers), "client": ("9.9.9.9", 1)}
        asyncio.run(gate(scope, receive, send))
        return sent[0]["status"], dict(sent[0]["headers"]), b"".join(m.get("body", b"") for m in sent[1:])

    now = [0.0]
    settings = SecuritySettings(auth_required=True, max_upload_bytes=1000, max_request_bytes=100, bearer_prefix="/v1")
    gate = SecurityGate(app, settings, LoginThrottle(3, 60, clock=lambda: now[0]))
    assert call(gate, "/config")[0] == 401 and reached == []  # the page's routes still need the login
    assert call(gate, "/v1x/models")[0] == 401 and reached == []  # only the prefix itself is the API
    assert call(gate, "/v1/models", [(b"authorization", b"Bearer good")])[0] == 200 and reached == ["/v1/models"]
    form = [(b"content-type", b"multipart/form-data; boundary=x"), (b"content-length", b"900")]
    assert call(gate, "/v1/audio/transcriptions", form, "POST")[0] == 401  # within the upload limit: the API answers
    status, _, body = call(gate, "/v1/audio/speech", [(b"content-type", b"application/json"), (b"content-length", b"500")], "POST")
    assert status == 413 and json.loads(body)["error"]["code"] == "request_too_large"  # JSON: the request limit
    for _ in range(5):  # no token: nothing guessed, never throttled
        assert call(gate, "/v1/models")[0] == 401
    for _ in range(3):
        assert call(gate, "/v1/models", [(b"authorization", b"Bearer wrong")])[0] == 401
    before = len(reached)
    status, headers, body = call(gate, "/v1/models", [(b"authorization", b"Bearer good")])
    assert status == 429 and int(headers[b"retry-after"]) >= 1 and len(reached) == before  # even the right key waits
    assert json.loads(body)["error"]["type"] == "rate_limit_error"
    now[0] += 1.5
    assert call(gate, "/v1/models", [(b"authorization", b"Bearer good")])[0] == 200
    assert gate.throttle.wait("9.9.9.9") == 0  # a success clears the count
    closed = SecurityGate(app, SecuritySettings(auth_required=True))  # no API served: /v1 is an ordinary route
    assert call(closed, "/v1/models", [(b"authorization", b"Bearer good")])[0] == 401
