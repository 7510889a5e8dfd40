"""The real app on the tiny profile, driven through its API with gradio_client."""

import numpy as np
import pytest
import soundfile as sf
from gradio_client import Client, handle_file

from tests.app_helpers import start_app
from tests.audio_helpers import voiced


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("app")
    proc, url = start_app(tmp)
    yield url, tmp
    proc.terminate()
    proc.wait(timeout=30)


def audio_ok(path) -> bool:
    data, sr = sf.read(path)
    return sr == 16000 and data.size > 0 and np.isfinite(data).all()


def test_tts_convert_and_chat_return_audio(app):
    url, tmp = app
    clip = tmp / "clip.wav"
    sf.write(clip, voiced(1.2, seed=3), 16000)
    client = Client(url, verbose=False)
    audio, file, info = client.predict("Hello there. It costs $5.", "flite-slt", None, 2, "implicit", 0.0, "flow", 1.0, 1.0, 0, api_name="/tts")
    assert audio_ok(audio) and audio_ok(file) and "RTF" in info
    audio, file, info = client.predict(handle_file(str(clip)), "flite-rms", None, 2, "implicit", 0.0, "flow", 0, api_name="/convert")
    assert audio_ok(audio)
    assert abs(sf.read(audio)[0].size - 1.2 * 16000) < 320
    result = client.predict(handle_file(str(clip)), "flite-awb", None, [], 1.0, 1.0, 0, api_name="/chat_audio")
    history, reply_audio, reply_file, latency = result
    assert audio_ok(reply_audio) and history[-1]["role"] == "assistant"
    history, reply_audio, _, _ = client.predict("hi there", "flite-awb", None, [], 1.0, 1.0, 0, api_name="/chat_text")
    assert "hi there" in str(history[0]["content"]) and audio_ok(reply_audio)


def test_errors_are_readable(app):
    url, tmp = app
    client = Client(url, verbose=False)
    with pytest.raises(Exception) as info:
        client.predict("", "flite-slt", None, 2, "implicit", 0.0, "flow", 1.0, 1.0, 0, api_name="/tts")
    assert "no text" in str(info.value)
    silent = tmp / "silent.wav"
    sf.write(silent, np.zeros(16000), 16000)
    with pytest.raises(Exception) as info:
        client.predict(handle_file(str(silent)), "flite-slt", None, 2, "implicit", 0.0, "flow", 0, api_name="/convert")
    assert "silent" in str(info.value)
    # the app keeps serving after errors
    audio, _, _ = client.predict("Still here.", "flite-slt", None, 2, "implicit", 0.0, "flow", 1.0, 1.0, 0, api_name="/tts")
    assert audio_ok(audio)
