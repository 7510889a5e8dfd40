"""The OpenAI-compatible API of `python launch.py` (tiny profile, --api-key), driven with the
official `openai` client: speech in every format (the tiny models' audio is noise, but its
length and encoding are real), streaming, voices, transcription, conversion, auth and errors."""

import io

import numpy as np
import pytest
import soundfile as sf

from tests.app_helpers import start_app
from tests.audio_helpers import voiced

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

KEY = "sk-test-key"
UNITS_PER_SENTENCE = 120  # tiny profile: semantic.sampling.max_new_tokens; units are 50 Hz


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("openai")
    proc, url = start_app(tmp, extra_args=("--api-key", KEY))
    yield url.rstrip("/"), tmp
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server[0]}/v1", api_key=KEY, max_retries=0, timeout=300)


def speak(client, text="Hello there.", fmt="wav", seed=0, voice="flite-slt", **kw) -> bytes:
    return client.audio.speech.create(model="tts-1", voice=voice, input=text, response_format=fmt, extra_body={"seed": seed}, **kw).content


def test_speech_decodes_to_audio_of_plausible_length(client):
    data, sr = sf.read(io.BytesIO(speak(client)))
    assert sr == 16000  # the voices' (and the codec's) sample rate
    assert data.ndim == 1 and np.isfinite(data).all()
    assert 0.1 < data.size / sr <= UNITS_PER_SENTENCE / 50 + 0.1  # one sentence: at most its unit budget
    assert speak(client) == speak(client)  # same seed, same audio
    # our model names and OpenAI's run the same configured chain
    ours = client.audio.speech.create(model="speechgpt-gen", voice="flite-slt", input="Hello there.", response_format="wav",
                                      extra_body={"seed": 0}).content
    assert ours == speak(client)


def test_every_format_encodes_the_same_audio(client):
    wav, sr = sf.read(io.BytesIO(speak(client, fmt="wav")), dtype="int16")
    flac, _ = sf.read(io.BytesIO(speak(client, fmt="flac")), dtype="int16")
    assert np.array_equal(wav, flac)  # lossless
    pcm = np.frombuffer(speak(client, fmt="pcm"), dtype="<i2")
    assert np.array_equal(pcm, wav)  # raw 16-bit little-endian at 16 kHz, no header
    for fmt, slack in (("mp3", 0.15), ("opus", 0.1)):  # lossy: length up to the encoder's padding
        data, rate = sf.read(io.BytesIO(speak(client, fmt=fmt)))
        assert rate == sr and abs(data.size - wav.size) < slack * sr, fmt


def test_streamed_speech_arrives_in_chunks(client):
    text = "This is the first sentence of the streamed reply. And this is the second sentence that follows it."
    with client.audio.speech.with_streaming_response.create(model="tts-1", voice="flite-rms", input=text, response_format="pcm",
                                                            stream_format="audio", extra_body={"seed": 1}) as response:
        assert response.headers["content-type"].startswith("audio/pcm")
        assert response.headers.get("transfer-encoding") == "chunked"
        body = b"".join(response.iter_bytes())
    samples = len(body) // 2
    assert len(body) % 2 == 0 and 0.2 * 16000 < samples <= 2 * (UNITS_PER_SENTENCE / 50) * 16000 + 1600


def test_models_and_voices(client, server):
    ids = {m.id for m in client.models.list()}
    assert {"tts-1", "tts-1-hd", "gpt-4o-mini-tts", "whisper-1", "speechgpt-gen"} <= ids
    for path in ("/v1/audio/voices", "/v1/voices"):
        listing = httpx.get(server[0] + path, headers={"Authorization": f"Bearer {KEY}"}).json()
        names = {v["id"] for v in listing["voices"]}
        assert {"flite-slt", "flite-rms", "flite-awb"} <= names


def test_transcription_and_conversion(client, server):
    buf = io.BytesIO()
    sf.write(buf, voiced(1.0, seed=4), 16000, format="WAV")
    text = client.audio.transcriptions.create(model="whisper-1", file=("question.wav", buf.getvalue()))
    assert isinstance(text.text, str)  # random tiny model: the words are noise, the path is real
    source = voiced(1.2, sr=22050, seed=6)
    flac = io.BytesIO()
    sf.write(flac, source, 22050, format="FLAC")  # another rate and format: decoded from the bytes
    r = httpx.post(server[0] + "/v1/audio/conversions", headers={"Authorization": f"Bearer {KEY}"},
                   files={"file": ("src.flac", flac.getvalue())}, data={"voice": "flite-awb", "response_format": "wav", "seed": "0"},
                   timeout=300)
    assert r.status_code == 200, r.text
    out, sr = sf.read(io.BytesIO(r.content))
    assert sr == 16000 and abs(out.size - 1.2 * 16000) < 320  # same length as the source, to the frame


def test_a_wrong_or_missing_key_is_refused(server):
    bad = openai.OpenAI(base_url=f"{server[0]}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        bad.audio.speech.create(model="tts-1", voice="flite-slt", input="Hello.")
    assert err.value.status_code == 401 and err.value.body["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    r = httpx.post(server[0] + "/v1/audio/speech", json={"model": "tts-1", "voice": "flite-slt", "input": "Hello."})
    assert r.status_code == 401 and set(r.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("change, param, words", [
    ({"voice": "alloy"}, "voice", "unknown voice"),
    ({"input": "   "}, "input", "empty"),
    ({"input": "word " * 1000}, "input", "limit"),
    ({"response_format": "aac"}, "response_format", "not available"),
    ({"model": "dall-e-3"}, "model", "unknown model"),
    ({"speed": 2.0}, "speed", "not supported"),
])
def test_bad_requests_are_4xx_with_a_message(client, change, param, words):
    args = {"model": "tts-1", "voice": "flite-slt", "input": "Hello.", "response_format": "wav", **change}
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.speech.create(**args)
    body = err.value.body
    assert err.value.status_code == 400 and body["param"] == param and words in body["message"]
    assert "Traceback" not in body["message"]


def test_bad_uploads_are_4xx(client):
    with pytest.raises(openai.BadRequestError, match="not audio"):
        client.audio.transcriptions.create(model="whisper-1", file=("notes.wav", b"this is not audio"))
    with pytest.raises(openai.BadRequestError, match="unknown model"):
        client.audio.transcriptions.create(model="tts-1", file=("q.wav", b"x"))


def test_transcription_model_names_choose_the_recognizer():
    """In-process: OpenAI's transcription names go to the app's recogniser (Engine.transcribe's "chat":
    Whisper tiny.en in the demo profile), ``speechgpt-gen`` to the chain's ASR; the clip arrives as audio."""
    from app.openai_api import SpeechApi
    from engine.config import load_config

    asked = []

    class Engine:
        config = load_config("tiny")

        def transcribe(self, audio, *, recognizer):
            rate, wav = audio
            asked.append((recognizer, rate, wav.size))
            return f"heard by {recognizer}"

    buf = io.BytesIO()
    sf.write(buf, voiced(1.0, seed=4), 16000, format="WAV")
    api = SpeechApi(Engine())
    assert api.transcription(buf.getvalue(), "whisper-1", None) == ("json", {"text": "heard by chat"})
    assert api.transcription(buf.getvalue(), "speechgpt-gen", "text") == ("text", "heard by chain")
    assert api.transcription(buf.getvalue(), "gpt-4o-mini-transcribe", "verbose_json")[1]["text"] == "heard by chat"
    assert asked == [("chat", 16000, 16000), ("chain", 16000, 16000), ("chat", 16000, 16000)]