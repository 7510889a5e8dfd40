"""Speaker augmentation of a demo corpus: speed-perturbed copies of its training rows as new voices.

``python -m engine demo augment --corpus data/demo_corpus --out data/demo_corpus_aug --speeds 0.9 1.1``

A corpus of a dozen voices is too few for zero-shot voice cloning: the demo flow model answers every
held-out prompt with its nearest training voice (docs/demo.md, part 2). Resampling an utterance by a
factor ``f`` (played back at 16 kHz) scales its pitch *and* its formants by ``f`` and its tempo by
``f``: to a listener and to a speaker encoder another speaker of the same accent (speed perturbation
as speaker augmentation, as in speaker-recognition training). Each factor makes one new voice per
training voice.

The output folder is a corpus in its own right (``manifest.jsonl`` + ``corpus.json``), so every tool
that reads a demo corpus reads it unchanged: the source rows, every split, hard-linked (copied where
links are impossible) under their own paths, plus the copies of the **train** rows only
(``select_split(..., "train")``: never a held-out voice or sentence) under ``VOICE-spNNN/``. Their
rows name the row they come from (``augmented_from``) and the factor (``speed``). Rerunning skips
valid files already there; the manifest is rewritten each run (atomically).
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

AUGMENT_FIELDS = MANIFEST_FIELDS + ("augmented_from", "speed")
MIN_SPEED, MAX_SPEED = 0.7, 1.4  # beyond these the copies stop sounding like natural speech


@dataclass
class AugmentConfig:
    corpus: Path  # the source corpus folder (``demo corpus --out``)
    out: Path  # the augmented corpus folder (must differ from ``corpus``)
    speeds: tuple[float, ...] = (0.9, 1.1)
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
    if not speeds or bad:
        raise EngineError(f"speed factors must lie in {MIN_SPEED}..{MAX_SPEED} and differ from 1 (got {bad or 'none'}); e.g. --speeds 0.9 1.1")
    rows = read_corpus_rows(src)
    if any("augmented_from" in r for r in rows):
        raise EngineError(f"{src} is already an augmented corpus; augment the corpus it was made from")
    train, _ = select_split(rows, "train")
    report = AugmentReport(out=out, source_rows=len(rows))
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    for r in rows:
        _link(src / r["path"], out / r["path"])
    new_rows: list[dict] = []
    todo = [(r, s) for r in train for s in speeds]
    bar = tqdm(total=len(todo), unit="utt", desc="speed-perturbed copies", disable=not cfg.progress)
    for r, s in todo:
        tag = speed_tag(s)
        voice = f"{r['voice']}-{tag}"
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
                audio = speed_perturb(pcm, s)
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
        row.update(id=uid, path=path, voice=voice, speaker=f"{r['speaker']}-{tag}", licence=f"{r['licence']}; speed-perturbed copy (x{s:g})",
                   duration=round(duration, 3), split="train", heldout_voice=False, heldout_sentence=False, augmented_from=r["id"], speed=s)
        new_rows.append(row)
        report.seconds[voice] = report.seconds.get(voice, 0.0) + duration
    bar.close()
    _write_manifest(out, rows, new_rows)
    _write_summary(src, out, speeds, rows, new_rows)
    report.wall_seconds = time.perf_counter() - t0
    log(format_augment_report(report))
    return report


def _write_manifest(out: Path, rows: Sequence[dict], new_rows: Sequence[dict]) -> None:
    tmp = out / "manifest.jsonl.tmp"
    with tmp.open("w", encoding="utf-8") as f:
        for r in list(rows) + list(new_rows):
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, out / "manifest.jsonl")


def _write_summary(src: Path, out: Path, speeds: Sequence[float], rows: Sequence[dict], new_rows: Sequence[dict]) -> None:
    summary_path = src / "corpus.json"
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else {}
    added = sum(r["duration"] for r in new_rows) / 3600.0
    summary.update(manifest_fields=list(AUGMENT_FIELDS), utterances=len(rows) + len(new_rows),
                   hours=round(float(summary.get("hours", sum(r["duration"] for r in rows) / 3600.0)) + added, 4),
                   augmentation={"source": str(src), "method": "speed perturbation (soxr resampling): pitch, formants and tempo x factor",
                                 "speeds": list(speeds), "rows": len(new_rows), "hours": round(added, 4),
                                 "voices": sorted({r["voice"] for r in new_rows})})
    tmp = out / "corpus.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out / "corpus.json")


def format_augment_report(report: AugmentReport) -> str:
    lines = [f"augmented corpus: {report.out}",
             f"source rows {report.source_rows} (linked), speed-perturbed copies: {report.augmented} written, {report.reused} reused, "
             f"{len(report.failures)} failed; {len(report.seconds)} new voices, {report.hours:.2f} h added in {report.wall_seconds:.0f} s"]
    for f in report.failures[:10]:
        lines.append(f"  failed {f['id']}: {f['error']}")
    return "\n".join(lines)
