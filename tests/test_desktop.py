import io

import numpy as np
import pytest

from app import desktop
from engine.config import load_config
from engine.pipeline import Engine
from tests.audio_helpers import voiced


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return Engine(load_config("tiny", overrides=[f"paths.voices_dir={tmp_path_factory.mktemp('v')}"]))


def scripted():
    """Two utterances separated by pauses, in 30 ms blocks, as the microphone would deliver."""
    audio = np.concatenate([np.zeros(8000), voiced(1.0, seed=1), np.zeros(24000), voiced(0.8, f0=200, seed=2), np.zeros(24000)]).astype(np.float32)
    audio += 0.002 * np.random.default_rng(0).standard_normal(audio.size).astype(np.float32)
    return [audio[i : i + 480] for i in range(0, audio.size, 480)]


def test_desktop_loop_with_scripted_microphone(engine):
    played, out = [], io.StringIO()
    rc = desktop.run_desktop(engine, voice="flite-slt", input_factory=scripted, play=lambda wav, sr: played.append((sr, wav.size)), out=out)
    assert rc == 0
    text = out.getvalue()
    assert text.count("you: ") == 2 and text.count("assistant: ") == 2
    assert len(played) == 2 and all(sr == 16000 and n > 0 for sr, n in played)
    assert len(engine.new_conversation()) == 0  # a fresh conversation each run


def test_no_device_and_no_portaudio(engine, monkeypatch, capsys):
    def broken():
        raise desktop.AudioDeviceError("cannot open the microphone (no default input device)")

    assert desktop.run_desktop(engine, voice="flite-slt", input_factory=broken, play=lambda *a: None) == 1
    assert "cannot open the microphone" in capsys.readouterr().err

    def no_portaudio():
        raise OSError("PortAudio library not found")

    monkeypatch.setattr(desktop, "_sounddevice", lambda: (_ for _ in ()).throw(desktop.AudioDeviceError("PortAudio is not available (x). Install it")))
    assert desktop.run_desktop(engine, voice="flite-slt") == 1
    assert "PortAudio is not available" in capsys.readouterr().err
