"""Test-set builders on small corpora laid out like LibriSpeech and VCTK, made in the test."""

import json

import numpy as np
import pytest
import soundfile as sf

from engine.errors import EngineError
from engine.eval.testsets import EvalItem, build_testset, read_manifest, sentence_case, write_manifest
from tests.audio_helpers import voiced

# seconds of each speaker's utterances: one too short for a prompt, some 4-10 s, one too long
DURATIONS = [2.0, 3.5, 5.0, 6.0, 12.0]


def _librispeech(root, speakers=("61", "121", "237")):
    for s, spk in enumerate(speakers):
        chapter = root / "test-clean" / spk / "100"
        chapter.mkdir(parents=True)
        lines = []
        for i, sec in enumerate(DURATIONS):
            uid = f"{spk}-100-{i:04d}"
            sf.write(chapter / f"{uid}.flac", voiced(sec, f0=100 + 40 * s, seed=i), 16000)
            lines.append(f"{uid} WORDS OF UTTERANCE {i} BY {spk}")
        (chapter / f"{spk}-100.trans.txt").write_text("\n".join(lines) + "\n")
    return root


def _vctk(root, speakers=("p225", "p226", "p227")):
    for s, spk in enumerate(speakers):
        (root / "txt" / spk).mkdir(parents=True)
        (root / "wav48_silence_trimmed" / spk).mkdir(parents=True)
        for i, sec in enumerate(DURATIONS):
            uid = f"{spk}_{i + 1:03d}"
            (root / "txt" / spk / f"{uid}.txt").write_text(f"Sentence {i} of {spk}.\n")
            wav = voiced(sec, sr=48000, f0=100 + 40 * s, seed=i)
            sf.write(root / "wav48_silence_trimmed" / spk / f"{uid}_mic1.flac", wav, 48000)
            sf.write(root / "wav48_silence_trimmed" / spk / f"{uid}_mic2.flac", wav, 48000)
    return root


def test_librispeech_tts_protocol(tmp_path):
    root = _librispeech(tmp_path / "LibriSpeech")
    path = build_testset("librispeech", root, tmp_path / "set", seed=3)
    items = read_manifest(path, "tts")
    assert len(items) == 3 and {i.speaker for i in items} == {"61", "121", "237"}
    for item in items:
        target_index = int(item.id.rsplit("-", 1)[1])
        assert DURATIONS[target_index] in (5.0, 6.0)  # 4-10 s targets only
        assert item.text == f"Words of utterance {target_index} by {item.speaker}"  # sentence case for the LLM
        assert item.reference.endswith(f"{item.id}.flac")
        prompt, sr = sf.read(item.prompt)
        assert sr == 16000 and len(prompt) == 3 * 16000  # a 3 s crop
    # paths inside the output folder are stored relative to it (the folder can be moved)
    raw = [json.loads(line) for line in path.read_text().splitlines()]
    assert all(r["prompt"].startswith("prompts/") for r in raw)
    # deterministic in the seed
    again = build_testset("librispeech", root, tmp_path / "again", seed=3)
    assert [i.id for i in read_manifest(again)] == [i.id for i in items]


def test_librispeech_speaker_sampling_and_per_speaker(tmp_path):
    root = _librispeech(tmp_path / "LibriSpeech")
    items = read_manifest(build_testset("librispeech", root, tmp_path / "two", speakers=2, per_speaker=0))
    assert len({i.speaker for i in items}) == 2 and len(items) == 4  # both 4-10 s utterances of each


def test_vctk_vc_protocol(tmp_path):
    root = _vctk(tmp_path / "VCTK")
    items = read_manifest(build_testset("vctk", root, tmp_path / "set"), "vc")
    assert len(items) == 3
    for item in items:
        assert item.source_speaker != item.speaker  # converted to another speaker's voice
        assert "_mic1" in item.source and item.text.startswith("Sentence ")
        prompt, sr = sf.read(item.prompt)
        assert sr == 16000 and len(prompt) == 3 * 16000  # resampled from 48 kHz and cropped
    assert {i.speaker for i in items} == {i.source_speaker for i in items}


def test_builder_errors(tmp_path):
    with pytest.raises(EngineError, match="no LibriSpeech"):
        build_testset("librispeech", tmp_path, tmp_path / "out")
    root = _vctk(tmp_path / "VCTK", speakers=("p225",))
    with pytest.raises(EngineError, match="two usable speakers"):
        build_testset("vctk", root, tmp_path / "out")


def test_manifest_validation(tmp_path):
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(16000, np.float32), 16000)
    good = write_manifest(tmp_path / "m.jsonl", [EvalItem("x", str(wav), text="hi")])
    assert read_manifest(good, "tts")[0].prompt == str(wav.resolve())
    with pytest.raises(EngineError, match="needs 'source'"):
        read_manifest(good, "vc")
    cases = {
        '{"id": "a", "prompt": "a.wav", "colour": 1}': "unknown field",
        '{"id": "a", "text": "hi"}': "needs a 'prompt'",
        '{"id": "a", "prompt": "missing.wav"}': "does not exist",
        "not json": "not JSON",
        '{"id": "a", "prompt": "a.wav"}\n{"id": "a", "prompt": "a.wav"}': "duplicate id",
    }
    for text, message in cases.items():
        (tmp_path / "bad.jsonl").write_text(text + "\n")
        with pytest.raises(EngineError, match=message):
            read_manifest(tmp_path / "bad.jsonl")


def test_sentence_case():
    assert sentence_case("HE SAID I WAS THERE AND I'M HERE") == "He said I was there and I'm here"
    assert sentence_case("Already Mixed case.") == "Already Mixed case."
    assert sentence_case("") == ""
