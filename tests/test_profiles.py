"""`python launch.py` with no arguments: the full profile when its files are in the local cache, the
demo profile otherwise; the banner and the Status tab say which and how to switch; no network."""

from __future__ import annotations

import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine.config import available_profiles, load_config
from engine.errors import ModelUnavailableError
from engine.profiles import choose_profile

FULL_FILES = {  # what the default profile reads from the hub cache
    "fnlp/AnyGPT-speech-modules": ["speechtokenizer/config.json", "speechtokenizer/ckpt.dev", "soundstorm/speechtokenizer_soundstorm_mls.pt"],
    "fnlp/AnyGPT-chat": ["config.json", "model.safetensors"],
    "fnlp/AnyGPT-base": ["config.json", "model.safetensors"],
}


def fake_hub_cache(root: Path, skip: str | None = None) -> Path:
    """A Hugging Face cache folder holding (empty) files of the full profile, ``skip`` left out."""
    for repo, files in FULL_FILES.items():
        folder = root / f"models--{repo.replace('/', '--')}"
        (folder / "refs").mkdir(parents=True, exist_ok=True)
        (folder / "refs" / "main").write_text("0123abcd")
        for name in files:
            if f"{repo}/{name}" == skip:
                continue
            path = folder / "snapshots" / "0123abcd" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
    return root


@pytest.fixture
def no_network(monkeypatch):
    """Fails the test on any connection to a non-loopback address; the offline switches of the
    test session are lifted so that a library which would go online really tries."""
    attempts: list[object] = []

    def local(address) -> bool:
        host = address[0] if isinstance(address, tuple) else str(address)
        return host in ("127.0.0.1", "::1", "localhost") or isinstance(address, (str, bytes))

    real_connect = socket.socket.connect

    def connect(self, address):
        if not local(address):
            attempts.append(address)
            raise OSError(f"test: network access to {address}")
        return real_connect(self, address)

    def create_connection(address, *args, **kwargs):
        if not local(address):
            attempts.append(address)
            raise OSError(f"test: network access to {address}")
        return socket.socket.create_connection(address, *args, **kwargs)  # pragma: no cover

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "SPEECHGPT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    yield attempts
    assert not attempts, f"network access: {attempts}"


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_auto_picks_full_when_its_files_are_cached_else_demo(hub_cache, no_network):
    choice = choose_profile()
    assert choice.name == "demo" and {"codec", "semantic", "semantic-tts-asr", "soundstorm"} <= set(choice.missing)
    assert "not on this machine" in choice.reason
    fake_hub_cache(hub_cache)
    choice = choose_profile()
    assert choice.name == "default" and not choice.missing and "are on this machine" in choice.reason
    cfg = load_config("auto")
    assert cfg.profile == "default" and cfg.profile_reason == choice.reason
    # one file short -> the demo again, naming what is missing
    (hub_cache / "models--fnlp--AnyGPT-base" / "snapshots" / "0123abcd" / "model.safetensors").unlink()
    choice = choose_profile()
    assert choice.name == "demo" and choice.missing == ["semantic-tts-asr"]
    assert load_config("auto").profile == "demo"


def test_auto_honours_overrides_of_the_full_profile(hub_cache, tmp_path, no_network):
    fake_hub_cache(hub_cache, skip="fnlp/AnyGPT-chat/model.safetensors")
    assert choose_profile().name == "demo"
    local = tmp_path / "chat"
    local.mkdir()
    (local / "config.json").write_text("{}")
    (local / "model.safetensors").write_bytes(b"x")
    assert choose_profile(overrides=[f"semantic.path={local}"]).name == "default"


def test_profile_names():
    assert load_config("full").profile == "default" and load_config("default").profile == "default"
    assert {"auto", "full", "default", "demo", "tiny"} <= set(available_profiles())
    assert load_config("tiny").profile_reason == ""


def test_launch_without_arguments_serves_demo_and_says_so(hub_cache, no_network, monkeypatch, capsys):
    import app.server
    import launch

    served = {}

    def serve(engine, **kwargs):
        served["engine"] = engine
        return None

    monkeypatch.setattr(app.server, "serve", serve)
    assert launch.main([]) == 0
    engine = served["engine"]
    cfg = engine.config
    assert cfg.profile == "demo" and "chosen automatically" in cfg.profile_reason
    banner = app.server.serving_message(SimpleNamespace(local_url="http://127.0.0.1:7860/", share_url=None), engine, True, None, None, False)
    assert banner.splitlines()[0].startswith("SpeechGPT-Gen assistant: profile 'demo' (chosen automatically")
    assert "chat reply text written by SmolLM2-135M-Instruct" in banner
    assert "--profile full" in banner and "assets/models/demo/codec" in banner
    from app.status import status_markdown

    status = status_markdown(engine.status(), cfg.profile, cfg.profile_reason)
    assert "chosen automatically" in status and "--profile full" in status and "SmolLM2-135M-Instruct" in status
    assert not (Path(launch.__file__).parent / "assets/configs/tiny.yaml").read_text().count("reply_writer")  # tiny stays tiny


def test_launch_picks_full_when_cached(hub_cache, no_network, monkeypatch):
    import app.server
    import launch

    fake_hub_cache(hub_cache)
    served = {}
    monkeypatch.setattr(app.server, "serve", lambda engine, **kw: served.update(engine=engine))
    assert launch.main([]) == 0
    engine = served["engine"]
    assert engine.config.profile == "default"
    banner = app.server.serving_message(SimpleNamespace(local_url="http://127.0.0.1:7860/", share_url=None), engine, False, None, None, False)
    assert "profile 'default' (chosen automatically" in banner and "--profile demo" in banner
    assert launch.main(["--profile", "demo"]) == 0  # an explicit profile is used as given
    assert served["engine"].config.profile == "demo" and served["engine"].config.profile_reason == ""


@pytest.mark.skipif(not Path(__file__).resolve().parent.parent.joinpath("assets/models/demo/codec/config.json").is_file(),
                    reason="the demo codec is not in this checkout")
def test_demo_without_its_semantic_model_says_it_is_not_trained(no_network, tmp_path):
    """A checkout whose bundled semantic model folder is missing (here: a bundled path that is not there)."""
    from engine.pipeline import Engine

    engine = Engine(load_config("demo", overrides=[f"paths.voices_dir={tmp_path}", "semantic.path=assets/models/demo/semantic-missing"]))
    rows = {s.role: s for s in engine.status()}
    assert not rows["semantic"].available and "not trained yet" in rows["semantic"].message
    assert "voice conversion works without it" in rows["semantic"].message
    with pytest.raises(ModelUnavailableError, match="not trained yet"):
        engine.semantic_for("tts")


def test_preload_skips_a_model_that_is_not_there(tmp_path, no_network, monkeypatch, capsys):
    import app.server
    import launch

    served = {}
    monkeypatch.setattr(app.server, "serve", lambda engine, **kw: served.update(engine=engine))
    missing = tmp_path / "no-such-model"
    assert launch.main(["--profile", "tiny", "--preload", "--set", "semantic.random_init=false", "--set", f"semantic.path={missing}",
                        "--set", "semantic.tts_path=null", "--set", "semantic.asr_path=null",
                        "--set", f"paths.voices_dir={tmp_path / 'voices'}"]) == 0
    printed = capsys.readouterr().out
    assert f"not loaded: semantic LLM: the folder {missing} does not exist" in printed
    assert served["engine"]._codec is not None and served["engine"]._perceptual  # the rest was loaded
