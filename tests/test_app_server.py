"""launch.py and app/server.py: flags over config defaults, credentials, the plain-http warning."""

import pytest

import launch
from app import server


def test_parse_auth(tmp_path):
    assert server.parse_auth(None, None) is None
    assert server.parse_auth("me:se:cret", None) == [("me", "se:cret")]
    f = tmp_path / "users"
    f.write_text("# team\nann:one\n\nbob:two\n")
    assert server.parse_auth("me:x", str(f)) == [("me", "x"), ("ann", "one"), ("bob", "two")]
    for bad in ["nopassword", ":x", "me:"]:
        with pytest.raises(SystemExit, match="user:password"):
            server.parse_auth(bad, None)
    with pytest.raises(SystemExit, match="no such file"):
        server.parse_auth(None, str(tmp_path / "missing"))


def test_http_warning_only_for_plain_http_to_other_machines():
    for host in ["127.0.0.1", "localhost", "::1"]:
        assert server.http_warning(host, share=False, tls=False) is None
    warning = server.http_warning("0.0.0.0", share=False, tls=False)
    assert warning and "microphone" in warning and "--share" in warning
    assert server.http_warning("192.168.1.5", share=True, tls=False) is None
    assert server.http_warning("192.168.1.5", share=False, tls=True) is None


@pytest.fixture
def served(monkeypatch):
    calls = {}
    monkeypatch.setattr(server, "serve", lambda engine, **kw: calls.update(kw, engine=engine))
    return calls


def test_launch_uses_config_defaults_then_flags(served, monkeypatch):
    monkeypatch.delenv("GRADIO_ANALYTICS_ENABLED", raising=False)
    assert launch.main(["--profile", "tiny"]) == 0
    assert (served["host"], served["port"], served["share"], served["auth"], served["concurrency"]) == ("127.0.0.1", 7860, False, None, 1)
    import os

    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"
    assert launch.main(["--profile", "tiny", "--set", "server.port=9000", "--set", "server.concurrency=3"]) == 0
    assert served["port"] == 9000 and served["concurrency"] == 3
    assert launch.main(["--profile", "tiny", "--host", "0.0.0.0", "--port", "8080", "--share", "--auth", "a:b", "--concurrency", "2"]) == 0
    assert (served["host"], served["port"], served["share"], served["auth"], served["concurrency"]) == ("0.0.0.0", 8080, True, [("a", "b")], 2)
    assert served["engine"].config.profile == "tiny"


def test_launch_reports_bad_config_without_traceback(served, capsys):
    assert launch.main(["--profile", "tiny", "--set", "server.no_such_key=1"]) == 1
    assert "error:" in capsys.readouterr().err and not served


def test_serve_warns_and_limits_concurrency(monkeypatch, caplog, tmp_path):
    """serve() builds the demo with the model concurrency group and queues it."""
    seen = {}

    class Demo:
        def queue(self, **kw):
            seen["queue"] = kw

        def launch(self, **kw):
            seen["launch"] = kw

    import app.ui

    from engine.config import AppConfig

    class FakeEngine:
        config = AppConfig()

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    monkeypatch.setattr(app.ui, "build_demo", lambda engine, concurrency: seen.update(concurrency=concurrency) or Demo())
    server.serve(FakeEngine(), host="0.0.0.0", port=1234, concurrency=0, prevent_thread_lock=True)
    assert seen["concurrency"] == 1 and seen["queue"] == {"default_concurrency_limit": 1}
    paths = {r.path for r in seen["launch"]["app_kwargs"]["routes"]}  # the OpenAI API is served by the same app
    assert {"/v1/audio/speech", "/v1/audio/voices", "/v1/voices", "/v1/audio/transcriptions", "/v1/models"} <= paths
    assert seen["launch"]["server_name"] == "0.0.0.0" and seen["launch"]["server_port"] == 1234
    assert "block the microphone" in caplog.text
    assert seen["launch"]["max_file_size"] == 50 * 2**20  # server.max_upload_mb, enforced while the upload streams
    assert seen["launch"]["app_kwargs"]["middleware"]  # the security gate


def test_console_names_profile_models_api_and_our_share_hint():
    from engine.config import load_config

    class Engine:
        config = load_config("tiny")

    class Demo:
        local_url = "http://127.0.0.1:7860/"
        share_url = None

    text = server.serving_message(Demo(), Engine(), api=True, api_key="k", auth=None, share=False)
    assert "profile 'tiny'" in text and "perceptual flow (random tiny)" in text and "semantic" in text
    assert "http://127.0.0.1:7860/v1" in text and "Bearer" in text
    assert "--share" in text and "share=True" not in text  # our flag, not Gradio's launch() argument
    Demo.share_url = "https://abc.gradio.live"
    shared = server.serving_message(Demo(), Engine(), api=False, api_key=None, auth=None, share=True)
    assert "https://abc.gradio.live" in shared and "/v1" not in shared and "start with --share" not in shared


def test_ui_and_api_share_one_concurrency_limit():
    """GatedEngine: with one slot, a second request (from the UI or the API) waits for the first."""
    import threading
    import time

    from app.gate import GatedEngine

    class Slow:
        config = "cfg"

        def __init__(self):
            self.running = self.most = 0
            self.lock = threading.Lock()

        def _work(self):
            with self.lock:
                self.running += 1
                self.most = max(self.most, self.running)
            time.sleep(0.05)
            with self.lock:
                self.running -= 1

        def tts(self, *a, **k):
            self._work()
            return "tts"

        def chat(self, *a, **k):
            self._work()
            yield "event"

        def stream_tts(self, *a, **k):
            self._work()
            yield "piece"

    engine = Slow()
    gated = GatedEngine(engine, concurrency=1)
    assert gated.config == "cfg"  # everything else is the engine's own
    threads = [threading.Thread(target=gated.tts) for _ in range(3)] + [threading.Thread(target=lambda: list(gated.chat())) for _ in range(2)]
    threads += [threading.Thread(target=lambda: list(gated.stream_tts())) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert engine.most == 1
    engine.most = 0
    wide = GatedEngine(engine, concurrency=3)
    threads = [threading.Thread(target=wide.tts) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert engine.most > 1  # the limit is the configured one, not a global lock
