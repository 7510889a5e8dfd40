"""Engine on the tiny profile: tts / convert / chat return consistent audio; errors are readable."""

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf

from engine.audio import AudioError
from engine.config import load_config
from engine.errors import EngineError
from engine.pipeline import AudioChunk, ChatDone, Engine, GenerationOptions, TextDelta, Transcript, TtsDone
from tests.audio_helpers import voiced


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    root = tmp_path_factory.mktemp("voices")
    cfg = load_config("tiny", overrides=[f"paths.voices_dir={root}"])
    eng = Engine(cfg)
    eng.voices.add("Tester", (22050, voiced(2.0, sr=22050, f0=180)), codec=eng.codec)
    return eng


def frames_ok(wav: np.ndarray) -> bool:
    return wav.dtype == np.float32 and wav.ndim == 1 and wav.size > 0 and np.isfinite(wav).all()


@pytest.mark.parametrize("text", ["Hello.", "It is 3:30 pm. The price is $5! Is that right? Yes, it is."])
def test_tts_short_and_multi_sentence(engine, text):
    r = engine.tts(text, "Tester", options=GenerationOptions(seed=0))
    assert r.sample_rate == 16000 and frames_ok(r.wav)
    assert r.metrics.audio_s == pytest.approx(r.wav.size / 16000)
    assert r.metrics.rtf > 0 and r.metrics.first_audio_s <= r.metrics.total_s
    again = engine.tts(text, "Tester", options=GenerationOptions(seed=0))
    assert np.array_equal(again.wav, r.wav)  # same seed, same audio


def _spy_units(monkeypatch, engine) -> list[list[int]]:
    """Records the units each stream_speak call has yielded so far (one list per call)."""
    model = engine.semantic_for("tts")
    calls: list[list[int]] = []
    real = model.stream_speak

    def spy(*args, **kwargs):
        calls.append([])
        for chunk in real(*args, **kwargs):
            calls[-1].extend(chunk)
            yield chunk

    monkeypatch.setattr(model, "stream_speak", spy)
    return calls


def test_stream_tts_starts_before_the_first_sentence_ends_and_joins_to_the_result(engine, monkeypatch):
    text = "It is 3:30 pm. The price is $5! Is that right? Yes, it is."
    calls = _spy_units(monkeypatch, engine)
    monkeypatch.setattr(engine.config.pipeline, "tts_first_frames", 25)  # the tiny profile's unit_chunk
    events, first_at = [], None
    for event in engine.stream_tts(text, "Tester", options=GenerationOptions(seed=0)):
        if isinstance(event, AudioChunk) and first_at is None:
            first_at = (len(calls), len(calls[-1]))
        events.append(event)
    done = events[-1]
    assert isinstance(done, TtsDone) and all(isinstance(e, AudioChunk) for e in events[:-1])
    assert len(calls) >= 2 and len(calls[0]) > 25  # several sentence chunks; the first one longer than its head
    assert first_at == (1, 25)  # audio after the first 25 units of the first chunk, not after it
    pieces = [e.wav for e in events[:-1]]
    assert len(pieces) >= 3 and all(frames_ok(p) for p in pieces)
    assert np.array_equal(np.concatenate(pieces), done.result.wav)  # the pieces are the result
    assert done.result.metrics.first_audio_s < done.result.metrics.total_s
    assert set(done.result.metrics.stages) >= {"semantic", "perceptual", "decode"}
    assert np.array_equal(engine.tts(text, "Tester", options=GenerationOptions(seed=0)).wav, done.result.wav)


def test_stream_tts_without_a_head_is_the_one_pass_synthesis(engine, monkeypatch):
    calls = _spy_units(monkeypatch, engine)
    monkeypatch.setattr(engine.config.pipeline, "tts_first_frames", 0)
    options = GenerationOptions(seed=0)
    events = list(engine.stream_tts("Hello there.", "Tester", options=options))
    assert len(events) == 3  # the audio less its held-back fade, the fade, the result
    wav = events[-1].result.wav
    one_pass = engine._synthesize(calls[0], engine.prompt("Tester"), engine._options(options))
    assert np.array_equal(wav, one_pass)
    monkeypatch.setattr(engine.config.pipeline, "tts_first_frames", 25)
    monkeypatch.setattr(engine.config.pipeline, "tts_stream_min_chars", 13)  # "Hello there." is shorter: one pass
    assert np.array_equal(engine.tts("Hello there.", "Tester", options=options).wav, one_pass)
    monkeypatch.setattr(engine.config.pipeline, "tts_stream_min_chars", 0)
    streamed = engine.tts("Hello there.", "Tester", options=options).wav
    if len(calls[0]) > 25:  # continued in a second chunk: near the one pass, not the same samples
        assert streamed.size == one_pass.size and not np.array_equal(streamed, one_pass)


def test_convert_keeps_length(engine):
    src = voiced(1.23, seed=4)
    for kind in ("flow", "soundstorm"):
        r = engine.convert((16000, src), "Tester", options=GenerationOptions(seed=1, perceptual=kind, steps=2))
        assert r.sample_rate == 16000 and frames_ok(r.wav)
        assert abs(r.wav.size - src.size) < 320


def test_chat_typed_and_spoken(engine):
    conv = engine.new_conversation()
    events = list(engine.chat("hello there", "Tester", conv, options=GenerationOptions(seed=2)))
    assert isinstance(events[0], Transcript) and events[0].text == "hello there"
    done = events[-1]
    assert isinstance(done, ChatDone) and frames_ok(done.wav) and done.sample_rate == 16000
    chunks = [e.wav for e in events if isinstance(e, AudioChunk)]
    assert chunks and sum(c.size for c in chunks) >= done.wav.size  # joined with cross-fades
    assert "".join(e.text for e in events if isinstance(e, TextDelta)).strip() == done.text
    spoken = list(engine.chat((16000, voiced(1.0, seed=9)), "Tester", conv, options=GenerationOptions(seed=3)))
    assert isinstance(spoken[0], Transcript) and isinstance(spoken[-1], ChatDone)
    assert len(conv) == 2


def test_long_typed_message_is_text_not_a_path(engine):
    long_line = "why " * 200  # longer than a file name may be: the file system raises, not us
    events = list(engine.chat(long_line, "Tester", options=GenerationOptions(seed=5)))
    assert isinstance(events[0], Transcript) and events[0].text == long_line
    assert isinstance(events[-1], ChatDone)


def test_voice_from_clip_and_errors(engine):
    r = engine.convert((16000, voiced(0.8)), (44100, voiced(1.5, sr=44100, f0=250)), options=GenerationOptions(seed=0))
    assert frames_ok(r.wav)
    with pytest.raises(AudioError):
        engine.convert((16000, np.zeros(16000, dtype=np.int16)), "Tester")
    with pytest.raises(EngineError, match="no voice named"):
        engine.tts("hi", "Nobody")
    with pytest.raises(EngineError, match="no text"):
        engine.tts("   ", "Tester")
    engine.semantic  # noqa: B018 - loads it (lazily) when this test runs alone
    status = {s.role: s for s in engine.status()}
    assert status["codec"].loaded and status["codec"].available and status["semantic"].loaded


def test_tts_and_chat_cli(tmp_path):
    voice = tmp_path / "voice.wav"
    sf.write(voice, voiced(2.0, f0=210), 16000)
    out = tmp_path / "tts.wav"
    run = subprocess.run([sys.executable, "-m", "engine", "tts", "--profile", "tiny", "--text", "Hello world. Second one.", "--voice", str(voice),
                          "--out", str(out), "--seed", "0"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    data, sr = sf.read(out)
    assert sr == 16000 and data.size > 0
    question = tmp_path / "q.wav"
    sf.write(question, voiced(1.0, seed=5), 16000)
    out2 = tmp_path / "reply.wav"
    run = subprocess.run([sys.executable, "-m", "engine", "chat", "--profile", "tiny", "--input", str(question), "--voice", str(voice),
                          "--out", str(out2), "--seed", "0"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "transcript:" in run.stdout and "reply text:" in run.stdout
    assert sf.read(out2)[1] == 16000
    for task, args in (("tts", ["--text", "x"]), ("chat", ["--input", str(question)])):  # the discrete baseline end to end
        out3 = tmp_path / f"{task}-soundstorm.wav"
        run = subprocess.run([sys.executable, "-m", "engine", task, "--profile", "tiny", *args, "--voice", str(voice), "--out", str(out3),
                              "--perceptual", "soundstorm", "--seed", "1"], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        data, sr = sf.read(out3)
        assert sr == 16000 and data.size > 0


def test_model_loading_is_its_own_line_not_part_of_first_audio(tmp_path):
    """The first request loads the models: that time is reported apart (load_s, the status rows),
    never inside first audio / total / RTF; later requests load nothing."""
    eng = Engine(load_config("tiny", overrides=[f"paths.voices_dir={tmp_path}"]))
    assert all(s.load_s is None and not s.loaded for s in eng.status())
    first = eng.tts("Hello.", "flite-slt", options=GenerationOptions(seed=0))
    status = {s.role: s for s in eng.status()}
    loaded = sum(status[role].load_s for role in ("codec", "semantic", "flow"))
    assert first.metrics.load_s > 0 and first.metrics.load_s == pytest.approx(loaded, rel=0.2, abs=0.05)
    assert "models loaded in" in first.metrics.summary() and first.metrics.first_audio_s <= first.metrics.total_s
    second = eng.tts("Hello.", "flite-slt", options=GenerationOptions(seed=0))
    assert second.metrics.load_s == 0 and "models loaded" not in second.metrics.summary()
    assert "soundstorm" not in status  # not configured, not loaded: not listed
    r = eng.convert((16000, voiced(0.5)), "flite-slt", options=GenerationOptions(perceptual="soundstorm", steps=1, seed=0))
    assert r.metrics.load_s > 0  # SoundStorm loaded for this request, reported apart
    status = {s.role: s for s in eng.status()}
    assert status["soundstorm"].loaded and status["soundstorm"].load_s > 0  # the model actually used is listed


def test_synthesize_units_speaks_given_units_in_a_voice(engine):
    """Engine.synthesize_units: the units a TTS request would speak -> 320 samples per unit, in the voice,
    the same audio for the same seed, different units -> different audio; bad units are refused."""
    units = engine.semantic_for("tts").speak("Hello there.", replace(engine.config.semantic.sampling, seed=3))
    wav = engine.synthesize_units(units, "Tester", options=GenerationOptions(seed=0))
    assert frames_ok(wav) and wav.size == len(units) * 320
    assert np.array_equal(wav, engine.synthesize_units(units, "Tester", options=GenerationOptions(seed=0)))
    assert not np.array_equal(wav, engine.synthesize_units(units[::-1], "Tester", options=GenerationOptions(seed=0)))
    with pytest.raises(EngineError, match="outside"):
        engine.synthesize_units([5, 2000], "Tester")
