"""Speaker augmentation of a demo corpus: copies of its training rows as new voices.

``python -m engine demo augment --corpus data/demo_corpus --out data/demo_corpus_aug --speeds 0.9 1.1``
``python -m engine demo augment --corpus data/demo_corpus --out data/demo_corpus_vt --new-voices 160 --minutes 4``

A corpus of a dozen voices is too few for zero-shot voice cloning: the demo flow model answers every
held-out prompt with its nearest training voice (docs/demo.md, part 2). Resampling an utterance by a
factor ``f`` (played back at 16 kHz) scales its pitch *and* its formants by ``f`` and its tempo by
``f``: to a listener and to a speaker encoder another speaker of the same accent (speed perturbation
as speaker augmentation, as in speaker-recognition training). Each factor makes one new voice per
training voice. Those copies stay near the voice they come from; ``--new-voices N`` makes N voices
that move further: each takes one training voice, a random pitch factor, a random vocal-tract
(formant) factor and a spectral tilt (``engine.demo.voice_shift``), and reads about ``--minutes``
of that voice's training sentences.

The output folder is a corpus in its own right (``manifest.jsonl`` + ``corpus.json``), so every tool
that reads a demo corpus reads it unchanged: the source rows, every split, hard-linked (copied where
links are impossible) under their own paths, plus the copies of the **train** rows only
(``select_split(..., "train")``: never a held-out voice or sentence) under ``VOICE-spNNN/``. Their
rows name the row they come from (``augmented_from``) and the factor (``speed``), or for a new voice
(``VOICE-vtNNN/``) its ``pitch``, ``formant`` and ``tilt_db``. Rerunning with the same options
skips valid files already there; the manifest is rewritten each run (atomically).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from engine.demo.corpus import MANIFEST_FIELDS, SAMPLE_RATE, _write_atomic, valid_wav
from engine.errors import EngineError

AUGMENT_FIELDS = MANIFEST_FIELDS + ("augmented_from", "speed", "pitch", "formant", "tilt_db")
MIN_SPEED, MAX_SPEED = 0.7, 1.4  # beyond these the copies stop sounding like natural speech
# new voices: pitch and formant factors drawn log-uniformly inside these, at least NOVELTY apart from
# the source voice (|log pitch| + |log formant|), tilt uniformly in +-MAX_TILT dB per octave
NEW_PITCH, NEW_FORMANT, MAX_TILT, NOVELTY = (0.72, 1.4), (0.86, 1.18), 3.0, 0.12


@dataclass
class AugmentConfig:
    corpus: Path  # the source corpus folder (``demo corpus --out``)
    out: Path  # the augmented corpus folder (must differ from ``corpus``)
    speeds: tuple[float, ...] = (0.9, 1.1)
    new_voices: int = 0  # voices with their own pitch and vocal tract (engine.demo.voice_shift)
    minutes: float = 4.0  # of speech per new voice
    seed: int = 0
    progress: bool = True


@dataclass
class AugmentReport:
    out: Path
    source_rows: int = 0
    augmented: int = 0  # copies written this run
    reused: int = 0  # copies already there and valid
    failures: list[dict] = field(default_factory=list)  # {id, error}
    seconds: dict[str, float] = field(default_factory=dict)  # new voice -> audio seconds
    wall_seconds: float = 0.0

    @property
    def hours(self) -> float:
        return sum(self.seconds.values()) / 3600.0


def speed_tag(factor: float) -> str:
    """``0.9`` -> ``"sp090"`` (the suffix of the new voice's name)."""
    return f"sp{int(round(factor * 100)):03d}"


def speed_perturb(pcm: np.ndarray, factor: float) -> np.ndarray:
    """16 kHz int16 audio played ``factor`` times faster: pitch, formants and tempo all scaled by
    ``factor`` (``len / factor`` samples; soxr, high quality)."""
    import soxr

    if not MIN_SPEED <= factor <= MAX_SPEED:
        raise ValueError(f"speed factor {factor} is outside {MIN_SPEED}..{MAX_SPEED}")
    x = np.asarray(pcm, np.float64).ravel() / 32768.0
    y = soxr.resample(x, SAMPLE_RATE * factor, SAMPLE_RATE, quality="HQ")
    return np.round(np.clip(y, -1.0, 32767 / 32768) * 32768).astype(np.int16)


@dataclass(frozen=True)
class NewVoice:
    """One voice made by ``--new-voices``: a training voice with another pitch and vocal tract."""

    name: str  # BASE-vtNNN
    base: str  # the training voice it is made from
    pitch: float
    formant: float
    tilt_db: float


def plan_new_voices(train: Sequence[dict], count: int, minutes: float, seed: int = 0) -> list[tuple[NewVoice, list[dict]]]:
    """``count`` new voices and the train rows each one reads (about ``minutes`` of speech, distinct
    sentences, drawn from its base voice's rows). Deterministic for ``seed``; base voices are taken
    in turn, so every training voice lends its sentences to about ``count / voices`` new voices."""
    if count < 0 or minutes <= 0:
        raise EngineError(f"--new-voices must be >= 0 and --minutes > 0 (got {count}, {minutes})")
    by_voice: dict[str, list[dict]] = {}
    for r in train:
        by_voice.setdefault(r["voice"], []).append(r)
    bases = sorted(by_voice)
    if count and not bases:
        raise EngineError("the corpus has no train rows to make new voices from")
    rng = np.random.default_rng(seed)
    order = [bases[i] for i in rng.permutation(len(bases))]
    plan = []
    for n in range(count):
        base = order[n % len(order)]
        while True:
            pitch = float(np.exp(rng.uniform(*np.log(NEW_PITCH))))
            formant = float(np.exp(rng.uniform(*np.log(NEW_FORMANT))))
            if abs(np.log(pitch)) + abs(np.log(formant)) >= NOVELTY:
                break
        tilt = float(rng.uniform(-MAX_TILT, MAX_TILT))
        rows = by_voice[base]
        picked, seconds = [], 0.0
        for i in rng.permutation(len(rows)):
            if seconds >= minutes * 60:
                break
            picked.append(rows[i])
            seconds += float(rows[i]["duration"]) / pitch
        voice = NewVoice(f"{base}-vt{n:03d}", base, round(pitch, 4), round(formant, 4), round(tilt, 2))
        plan.append((voice, picked))
    return plan


def _link(src: Path, dst: Path) -> None:
    if dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(src, dst)


def augment_corpus(cfg: AugmentConfig, log: Callable[[str], None] = print) -> AugmentReport:
    """Write the augmented corpus into ``cfg.out`` (resumable); returns what was done."""
    from tqdm import tqdm

    from engine.train.extract import read_corpus_rows, select_split

    src, out = Path(cfg.corpus), Path(cfg.out)
    if src.resolve() == out.resolve():
        raise EngineError("--out must be a new folder, not the source corpus (the source stays as it was built)")
    speeds = sorted(set(float(s) for s in cfg.speeds))
    bad = [s for s in speeds if not MIN_SPEED <= s <= MAX_SPEED or s == 1.0]
    if (not speeds and not cfg.new_voices) or bad:
        raise EngineError(f"speed factors must lie in {MIN_SPEED}..{MAX_SPEED} and differ from 1 (got {bad or 'none'}); "
                          "e.g. --speeds 0.9 1.1, or --new-voices 160")
    rows = read_corpus_rows(src)
    if any("augmented_from" in r for r in rows):
        raise EngineError(f"{src} is already an augmented corpus; augment the corpus it was made from")
    train, _ = select_split(rows, "train")
    report = AugmentReport(out=out, source_rows=len(rows))
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    for r in rows:
        _link(src / r["path"], out / r["path"])
    # one job per copy: (source row, new voice, new speaker, transform, fields of the new row)
    todo: list[tuple[dict, str, str, Callable[[np.ndarray], np.ndarray], dict]] = []
    for r in train:
        for s in speeds:
            tag = speed_tag(s)
            todo.append((r, f"{r['voice']}-{tag}", f"{r['speaker']}-{tag}", lambda pcm, s=s: speed_perturb(pcm, s),
                         {"speed": s, "licence": f"{r['licence']}; speed-perturbed copy (x{s:g})"}))
    for voice, picked in plan_new_voices(train, cfg.new_voices, cfg.minutes, cfg.seed):
        for r in picked:
            todo.append((r, voice.name, voice.name, lambda pcm, v=voice: _new_voice_audio(pcm, v),
                         {"pitch": voice.pitch, "formant": voice.formant, "tilt_db": voice.tilt_db,
                          "licence": f"{r['licence']}; pitch x{voice.pitch:g}, formants x{voice.formant:g}, tilt {voice.tilt_db:+g} dB/octave"}))
    new_rows: list[dict] = []
    bar = tqdm(total=len(todo), unit="utt", desc="new-voice copies", disable=not cfg.progress)
    for r, voice, speaker, transform, fields in todo:
        uid = f"{voice}-{r['sentence_id']}"
        path = f"{voice}/{uid}.wav"
        target = out / path
        duration = valid_wav(target)
        try:
            if duration is None:
                import soundfile as sf

                pcm, rate = sf.read(str(src / r["path"]), dtype="int16")
                if rate != SAMPLE_RATE:
                    raise ValueError(f"{rate} Hz, not {SAMPLE_RATE}")
                audio = transform(pcm)
                _write_atomic(target, audio)
                duration = audio.size / SAMPLE_RATE
                report.augmented += 1
            else:
                report.reused += 1
        except Exception as exc:  # a broken source file is reported, never fatal
            report.failures.append({"id": uid, "error": f"{type(exc).__name__}: {exc}"})
            continue
        finally:
            bar.update(1)
        row = {k: r[k] for k in MANIFEST_FIELDS if k in r}
        row.update(id=uid, path=path, voice=voice, speaker=speaker, duration=round(duration, 3), split="train",
                   heldout_voice=False, heldout_sentence=False, augmented_from=r["id"], **fields)
        new_rows.append(row)
        report.seconds[voice] = report.seconds.get(voice, 0.0) + duration
    bar.close()
    _write_manifest(out, rows, new_rows)
    _write_summary(src, out, speeds, cfg, rows, new_rows)
    report.wall_seconds = time.perf_counter() - t0
    log(format_augment_report(report))
    return report


def _write_manifest(out: Path, rows: Sequence[dict], new_rows: Sequence[dict]) -> None:
    tmp = out / "manifest.jsonl.tmp"
    with tmp.open("w", encoding="utf-8") as f:
        for r in list(rows) + list(new_rows):
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, out / "manifest.jsonl")


def _new_voice_audio(pcm: np.ndarray, voice: NewVoice) -> np.ndarray:
    """A source utterance (int16) spoken by ``voice``: shifted, then levelled like every corpus file."""
    from engine.demo.corpus import condition_audio
    from engine.demo.voice_shift import shift_voice

    return condition_audio(shift_voice(np.asarray(pcm, np.float64) / 32768.0, voice.pitch, voice.formant, voice.tilt_db), SAMPLE_RATE)


def _write_summary(src: Path, out: Path, speeds: Sequence[float], cfg: AugmentConfig, rows: Sequence[dict], new_rows: Sequence[dict]) -> None:
    summary_path = src / "corpus.json"
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else {}
    added = sum(r["duration"] for r in new_rows) / 3600.0
    summary.update(manifest_fields=list(AUGMENT_FIELDS), utterances=len(rows) + len(new_rows),
                   hours=round(float(summary.get("hours", sum(r["duration"] for r in rows) / 3600.0)) + added, 4),
                   augmentation={"source": str(src), "speed_method": "speed perturbation (soxr resampling): pitch, formants and tempo x factor",
                                 "speeds": list(speeds),
                                 "new_voice_method": "engine.demo.voice_shift: pitch x p (resampled), spectral envelope warped to formants x f, tilt",
                                 "new_voices": cfg.new_voices, "minutes_per_new_voice": cfg.minutes, "seed": cfg.seed,
                                 "rows": len(new_rows), "hours": round(added, 4),
                                 "voices": sorted({r["voice"] for r in new_rows})})
    tmp = out / "corpus.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out / "corpus.json")


def format_augment_report(report: AugmentReport) -> str:
    lines = [f"augmented corpus: {report.out}",
             f"source rows {report.source_rows} (linked), copies as new voices: {report.augmented} written, {report.reused} reused, "
             f"{len(report.failures)} failed; {len(report.seconds)} new voices, {report.hours:.2f} h added in {report.wall_seconds:.0f} s"]
    for f in report.failures[:10]:
        lines.append(f"  failed {f['id']}: {f['error']}")
    return "\n".join(lines)
