"""Desktop mode with the audio streams injected: a scripted microphone, a recording speaker."""

import io

import numpy as np

from app import desktop
from tests.app_helpers import tiny_engine
from tests.audio_helpers import voiced


class ScriptedMicrophone:
    """Two utterances separated by pauses, in 30 ms blocks as the microphone delivers them.
    Counts how often the loop throws away what was captured while it replied."""

    def __init__(self):
        rng = np.random.default_rng(0)
        audio = np.concatenate([np.zeros(8000), voiced(1.0, seed=1), np.zeros(24000), voiced(0.8, f0=200, seed=2), np.zeros(24000)])
        audio = (audio + 0.002 * rng.standard_normal(audio.size)).astype(np.float32)
        self.blocks = [audio[i : i + 480] for i in range(0, audio.size, 480)]
        self.drained = 0

    def __iter__(self):
        return iter(self.blocks)

    def drain(self):
        self.drained += 1


def test_desktop_loop_with_scripted_microphone():
    engine = tiny_engine()
    played, out, mic = [], io.StringIO(), ScriptedMicrophone()
    rc = desktop.run_desktop(engine, voice="flite-slt", input_factory=lambda: mic, play=lambda wav, sr: played.append((sr, wav.size)), out=out)
    assert rc == 0
    text = out.getvalue()
    assert text.count("you: ") == 2 and text.count("assistant: ") == 2 and text.count("RTF") == 2
    assert len(played) == 2 and all(sr == 16000 and n > 0 for sr, n in played)
    assert mic.drained == 2  # half-duplex: its own reply is not heard as the next turn


def test_engine_errors_are_printed_and_listening_goes_on():
    engine = tiny_engine()
    out = io.StringIO()
    rc = desktop.run_desktop(engine, voice="no-such-voice", input_factory=ScriptedMicrophone, play=lambda *a: None, out=out)
    assert rc == 0 and out.getvalue().count("error:") == 2 and "no-such-voice" in out.getvalue()


def test_no_device_and_no_portaudio(monkeypatch, capsys):
    engine = tiny_engine()

    def no_microphone():
        raise desktop.AudioDeviceError("cannot open the microphone (no default input device)")

    assert desktop.run_desktop(engine, voice="flite-slt", input_factory=no_microphone, play=lambda *a: None) == 1
    assert "cannot open the microphone" in capsys.readouterr().err

    # sounddevice raises OSError on import when the PortAudio library is missing
    import builtins

    real_import = builtins.__import__

    def no_portaudio(name, *args, **kwargs):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_portaudio)
    assert desktop.run_desktop(engine, voice="flite-slt") == 1
    err = capsys.readouterr().err
    assert "PortAudio is not available" in err and "libportaudio2" in err
    import launch

    assert launch.main(["--profile", "tiny", "--list-devices"]) == 1
    assert "libportaudio2" in capsys.readouterr().err

