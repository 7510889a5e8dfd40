"""The real app (launch.py, tiny profile) on a free local port, driven through its API with gradio_client."""

import numpy as np
import pytest
import soundfile as sf
from gradio_client import Client, handle_file

from tests.app_helpers import start_app
from tests.audio_helpers import voiced

KNOBS = dict(steps=2, chain="implicit", guidance=0.0, perceptual="flow", seed=0)
LLM = dict(temperature=1.0, top_p=1.0)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("app")
    proc, url = start_app(tmp)
    yield Client(url, verbose=False), tmp
    proc.terminate()
    proc.wait(timeout=30)


def audio_ok(path) -> int:
    """Number of samples of a finite 16 kHz audio file (0 if it is not one)."""
    data, sr = sf.read(path)
    return data.size if sr == 16000 and np.isfinite(data).all() else 0


def test_tts_convert_and_chat_return_audio(app):
    client, tmp = app
    clip = tmp / "clip.wav"
    sf.write(clip, voiced(1.2, seed=3), 16000)
    _live, audio, file, info = client.predict("Hello there. It costs $5.", "flite-slt", None, **KNOBS, **LLM, api_name="/tts")
    assert audio_ok(audio) > 0 and audio_ok(file) == audio_ok(audio) and "RTF" in info and "five dollars" in info
    # an uploaded clip as the voice
    _, audio, _, _ = client.predict("Hi.", "(my clip below)", handle_file(str(clip)), **KNOBS, **LLM, api_name="/tts")
    assert audio_ok(audio) > 0
    audio, file, info = client.predict(handle_file(str(clip)), "flite-rms", None, **KNOBS, api_name="/convert")
    assert abs(audio_ok(audio) - 1.2 * 16000) < 320  # same length as the source, to the frame
    history, _live, reply_audio, reply_file, latency = client.predict(handle_file(str(clip)), "flite-awb", None, [], **KNOBS, **LLM,
                                                               api_name="/chat_audio")
    assert audio_ok(reply_audio) > 0 and audio_ok(reply_file) > 0 and "RTF" in latency
    assert [m["role"] for m in history] == ["user", "assistant"] and "(spoken)" in str(history[0]["content"])
    history, _live, reply_audio, _, _, box = client.predict("hi there", "flite-awb", None, history, **KNOBS, **LLM, api_name="/chat_text")
    assert [m["role"] for m in history] == ["user", "assistant"] * 2 and "hi there" in str(history[2]["content"])
    assert audio_ok(reply_audio) > 0 and box == ""


def test_errors_are_readable_and_the_app_keeps_serving(app):
    client, tmp = app
    with pytest.raises(Exception, match="no text"):
        client.predict("  ", "flite-slt", None, **KNOBS, **LLM, api_name="/tts")
    silent = tmp / "silent.wav"
    sf.write(silent, np.zeros(16000), 16000)
    with pytest.raises(Exception, match="silent"):
        client.predict(handle_file(str(silent)), "flite-slt", None, **KNOBS, api_name="/convert")
    with pytest.raises(Exception, match="voice clip"):
        client.predict("Hi.", "(my clip below)", None, **KNOBS, **LLM, api_name="/tts")
    # typed text never opens server files: a message naming one is just a message
    history, *_ = client.predict(str(silent), "flite-slt", None, [], **KNOBS, **LLM, api_name="/chat_text")
    assert str(silent) in str(history[0]["content"]) and "⚠️" not in str(history[1]["content"])
    _, audio, _, _ = client.predict("Still here.", "flite-slt", None, **KNOBS, **LLM, api_name="/tts")
    assert audio_ok(audio) > 0


def test_voice_library_add_rename_delete(app):
    client, tmp = app
    clip = tmp / "new.wav"
    sf.write(clip, np.concatenate([voiced(1.5, f0=180, seed=8), np.zeros(4000)]), 16000)
    library, chat_v, tts_v, vc_v, name, _, desc, _ = client.predict("my-voice", handle_file(str(clip)), "test", False, "flite-slt", "flite-slt",
                                                                    "flite-slt", api_name="/add_voice")
    assert library["value"] == "my-voice" and tts_v["value"] == "flite-slt" and name == desc == ""  # the form is cleared
    assert ["my-voice", "my-voice"] in tts_v["choices"]  # every voice picker learns the new voice
    _, audio, _, _ = client.predict("Hello.", "my-voice", None, **KNOBS, **LLM, api_name="/tts")
    assert audio_ok(audio) > 0
    with pytest.raises(Exception, match="(?i)name"):
        client.predict("../evil", handle_file(str(clip)), "", False, "flite-slt", "flite-slt", "flite-slt", api_name="/add_voice")
    with pytest.raises(Exception, match="Replace a voice of the same name"):
        client.predict("my-voice", handle_file(str(clip)), "again", False, "flite-slt", "flite-slt", "flite-slt", api_name="/add_voice")
    client.predict("my-voice", handle_file(str(clip)), "again", True, "flite-slt", "flite-slt", "flite-slt", api_name="/add_voice")
    library, chat_v, _, _, _ = client.predict("my-voice", "renamed", "my-voice", "flite-slt", "flite-slt", api_name="/rename_voice")
    assert library["value"] == "renamed" and chat_v["value"] == "renamed"  # a picker on the old name follows it
    library, chat_v, _, _ = client.predict("renamed", "renamed", "flite-slt", "flite-slt", api_name="/delete_voice")
    names = [c[0] for c in library["choices"]]
    assert "renamed" not in names and chat_v["value"] in names and not (tmp / "voices" / "renamed").exists()
    status = client.predict(api_name="/status")
    assert "codec" in status and "Tiny profile" in status
