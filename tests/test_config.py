import subprocess
import sys

import pytest

from engine.config import AppConfig, from_dict, load_config, parse_override, save_yaml_dataclass, load_yaml_dataclass
from engine.errors import ConfigError


def test_profiles_resolve():
    tiny = load_config("tiny")
    assert isinstance(tiny, AppConfig) and tiny.profile == "tiny"
    assert tiny.codec.random_init and tiny.semantic.random_init and tiny.perceptual.flow.random_init
    default = load_config("default")
    assert not default.codec.random_init
    assert default.codec.path == "fnlp/AnyGPT-speech-modules" and default.codec.weights_file == "ckpt.dev"
    assert default.semantic.path == "fnlp/AnyGPT-chat"


def test_overrides_and_files(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("perceptual:\n  flow:\n    steps: 3\nserver:\n  port: 9000\n")
    cfg = load_config("tiny", extra, ["perceptual.flow.steps=7", "server.share=true", "pipeline.crossfade_ms=12.5"])
    assert cfg.perceptual.flow.steps == 7 and cfg.server.port == 9000
    assert cfg.server.share is True and cfg.pipeline.crossfade_ms == 12.5


def test_on_off_switches_survive_yaml_booleans(tmp_path):
    """YAML 1.1 reads a bare on/off as a boolean: a string switch (auto | on | off) still gets its word."""
    cfg = load_config("tiny", overrides=["semantic.fuse=off", "semantic.half_matmul=on"])
    assert cfg.semantic.fuse == "off" and cfg.semantic.half_matmul == "on"
    extra = tmp_path / "extra.yaml"
    extra.write_text("semantic:\n  fuse: off\n")
    assert load_config("tiny", extra).semantic.fuse == "off"


def test_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="unknown profile"):
        load_config("nope")
    with pytest.raises(ConfigError, match="unknown setting.*server.prot"):
        load_config("tiny", overrides=["server.prot=1"])
    with pytest.raises(ConfigError, match="expected an integer"):
        load_config("tiny", overrides=["server.port=abc"])
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("justakey")
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config("tiny", bad)


def test_yaml_roundtrip(tmp_path):
    cfg = load_config("tiny", overrides=["perceptual.flow.chain=explicit"])
    save_yaml_dataclass(cfg, tmp_path / "c.yaml")
    again = load_yaml_dataclass(AppConfig, tmp_path / "c.yaml")
    assert again == cfg
    assert from_dict(AppConfig, {}) == AppConfig()


@pytest.mark.parametrize("profile", ["tiny", "default"])
def test_info_runs_offline(profile):
    out = subprocess.run([sys.executable, "-m", "engine", "info", "--profile", profile],
                         capture_output=True, text=True, timeout=120, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr
    assert f"# profile: {profile}" in out.stdout
    assert "## models" in out.stdout and "CUDA available" in out.stdout
    assert "WER: whisper-" in out.stdout and "speaker similarity: " in out.stdout  # the eval scorers, found offline
    if profile == "tiny":
        assert "Ready" in out.stdout and "not a real voice" in out.stdout
    else:
        # nothing is downloaded here: the report names what is missing and how to get it
        assert "MISSING" in out.stdout and "hf download fnlp/AnyGPT-speech-modules" in out.stdout


def test_cli_help_and_unknown():
    out = subprocess.run([sys.executable, "-m", "engine", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "train-flow" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "engine", "frobnicate"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown command" in bad.stderr
