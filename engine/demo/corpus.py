"""Build the offline demo speech corpus: many TTS voices reading free English sentences.

``build_corpus(CorpusConfig(out=...))`` plans which voice reads which sentence, renders the
missing utterances in parallel processes (one thread each), and writes

- ``VOICE/UTT_ID.wav``: 16 kHz mono 16-bit, leading/trailing silence trimmed to 0.1 s,
  loudness-normalised (speech RMS -20 dBFS, peak at most -1 dBFS), written atomically;
- ``manifest.jsonl``: one row per utterance on disk (see ``MANIFEST_FIELDS``);
- ``corpus.json``: voices and licences, sentence sources and licences, counts, hours, split,
  failures and timings.

The split: held-out voices (``VoiceSpec.heldout``) and held-out sentences (``test_fraction`` of the
pool, chosen by hash) are never in ``train``. Held-out voices read held-out sentences first; every
training voice also reads a few held-out sentences, as ``test`` rows (seen voice, unseen text).

Rerunning with ``resume`` skips every valid file already there and rebuilds the manifest; a voice
whose engine is missing, or a sentence an engine fails on, is skipped and reported, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from engine.demo.sentences import SOURCES, Sentence, build_sentences
from engine.demo.voices_tts import DEFAULT_VOICES, VoiceSpec, open_engine, prepare_engines
from engine.errors import EngineError

SAMPLE_RATE = 16000
#: manifest.jsonl columns, in order
MANIFEST_FIELDS = ("id", "path", "voice", "speaker", "engine", "licence", "text", "raw_text", "sentence_id",
                   "source", "duration", "sample_rate", "split", "heldout_voice", "heldout_sentence")
MIN_SECONDS, MAX_SECONDS = 0.4, 16.0  # rendered audio outside these bounds is rejected (and reported)
#: rendered (trimmed) audio over the chars-per-second estimate; measured on the real corpus:
#: 12.2 h planned with the raw estimate gave 10.40 h of audio
ESTIMATE_TO_AUDIO = 0.85


@dataclass
class CorpusConfig:
    """What ``build_corpus`` makes. ``hours`` is split over the voices by their ``weight``."""

    out: Path
    hours: float = 10.0
    jobs: int = 2
    voices: tuple[VoiceSpec, ...] = DEFAULT_VOICES
    seed: int = 0
    test_fraction: float = 0.06  # of the sentences, held out entirely from training
    test_share: float = 0.03  # of each training voice's hours: held-out sentences it reads (test rows)
    resume: bool = False
    progress: bool = True
    chunk_seconds: float = 45.0
    max_minutes: float | None = None  # stop starting tasks after this wall time (the rest: --resume)  # about this much compute per task (small enough to balance the workers)
    sentences: Sequence[Sentence] | None = None  # None: build_sentences(seed)
    generated_sentences: int = 2500


@dataclass(frozen=True)
class Utterance:
    """One planned utterance: a voice reading a sentence."""

    id: str
    voice: VoiceSpec
    sentence: Sentence
    heldout_sentence: bool

    @property
    def path(self) -> str:
        return f"{self.voice.name}/{self.id}.wav"

    @property
    def split(self) -> str:
        return "test" if self.voice.heldout or self.heldout_sentence else "train"


@dataclass
class CorpusReport:
    """What a build did: per-voice counts and hours, failures, size and wall time."""

    out: Path
    utterances: int = 0
    rendered: int = 0
    skipped_existing: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # voice -> audio seconds in the manifest
    counts: dict[str, int] = field(default_factory=dict)  # voice -> utterances in the manifest
    compute: dict[str, float] = field(default_factory=dict)  # voice -> worker seconds spent this run
    rendered_seconds: dict[str, float] = field(default_factory=dict)  # voice -> audio seconds rendered this run
    failures: list[dict] = field(default_factory=list)  # {voice, id, error}
    bytes: int = 0
    wall_seconds: float = 0.0
    stopped_early: int = 0  # utterances not started because max_minutes ran out
    split_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def hours(self) -> float:
        return sum(self.seconds.values()) / 3600.0


def _stable_unit(key: str) -> float:
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:12], 16) / float(16**12)


def heldout_sentence_ids(sentences: Sequence[Sentence], fraction: float, seed: int) -> set[str]:
    """The ids of the sentences held out from training: a ``fraction`` of them chosen by hash."""
    ranked = sorted(sentences, key=lambda s: _stable_unit(f"{seed}-{s.id}"))
    return {s.id for s in ranked[: int(np.ceil(fraction * len(sentences)))]}


def _estimate(spec: VoiceSpec, sentence: Sentence) -> float:
    """Expected seconds of (trimmed) audio for ``sentence`` in ``spec``'s voice."""
    return ESTIMATE_TO_AUDIO * (len(sentence.text) / spec.chars_per_second + 0.35)


def plan_corpus(cfg: CorpusConfig, sentences: Sequence[Sentence]) -> list[Utterance]:
    """Which voice reads which sentence: deterministic for the seed, hours shared by voice weight."""
    names = [v.name for v in cfg.voices]
    if len(set(names)) != len(names):
        raise EngineError(f"voice names must be unique: {names}")
    test_ids = heldout_sentence_ids(sentences, cfg.test_fraction, cfg.seed)
    test = [s for s in sentences if s.id in test_ids]
    train = [s for s in sentences if s.id not in test_ids]
    total_weight = sum(v.weight for v in cfg.voices) or 1.0
    plan: list[Utterance] = []
    for spec in cfg.voices:
        budget = cfg.hours * 3600.0 * spec.weight / total_weight
        rng = random.Random(f"{cfg.seed}-{spec.name}")
        tests, trains = list(test), list(train)
        rng.shuffle(tests)
        rng.shuffle(trains)
        # a held-out voice reads the held-out sentences first; a training voice reads a few of them
        phases = [(tests, True, budget), (trains, False, budget)] if spec.heldout else \
            [(tests, True, cfg.test_share * budget), (trains, False, budget)]
        used = 0.0
        for pool, held, limit in phases:
            for sentence in pool:
                if used >= limit:
                    break
                used += _estimate(spec, sentence)
                plan.append(Utterance(f"{spec.name}-{sentence.id}", spec, sentence, held))
    return plan


# --------------------------------------------------------------------------- audio
def condition_audio(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """16 kHz int16: resampled (soxr), DC removed, silence trimmed to 0.1 s, loudness-normalised."""
    import soxr

    x = np.asarray(wave, np.float64).ravel()
    if x.size == 0 or not np.isfinite(x).all():
        raise ValueError("empty or non-finite audio")
    if sample_rate != SAMPLE_RATE:
        x = soxr.resample(x, sample_rate, SAMPLE_RATE, quality="HQ")
    x = x - x.mean()
    hop = SAMPLE_RATE // 100  # 10 ms frames
    n = len(x) // hop
    if n < 5:
        raise ValueError("audio shorter than 50 ms")
    rms = np.sqrt((x[: n * hop].reshape(n, hop) ** 2).mean(axis=1) + 1e-12)
    threshold = max(rms.max() * 10 ** (-40 / 20), 1e-4)
    active = np.nonzero(rms > threshold)[0]
    if active.size == 0:
        raise ValueError("silent audio")
    pad = SAMPLE_RATE // 10
    x = x[max(0, active[0] * hop - pad): min(len(x), (active[-1] + 1) * hop + pad)]
    speech_rms = float(np.sqrt((rms[active] ** 2).mean()))
    gain = 0.1 / speech_rms  # -20 dBFS speech
    peak = float(np.abs(x).max()) * gain
    if peak > 0.89:  # -1 dBFS
        gain *= 0.89 / peak
    return np.round(np.clip(x * gain, -1.0, 1.0) * 32767).astype(np.int16)


def valid_wav(path: Path) -> float | None:
    """The duration of a finished corpus file, or None when it is missing or not 16 kHz mono."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:
        return None
    if info.samplerate != SAMPLE_RATE or info.channels != 1 or info.frames < MIN_SECONDS * SAMPLE_RATE:
        return None
    return info.frames / SAMPLE_RATE


def _write_atomic(path: Path, pcm: np.ndarray) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.wav")
    sf.write(str(tmp), pcm, SAMPLE_RATE, subtype="PCM_16")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- workers
def _init_worker() -> None:
    """One thread per worker process: two busy processes with two threads each crawl on 2 cores."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def render_chunk(spec: VoiceSpec, items: Sequence[tuple[str, str]], out: str) -> dict:
    """Render ``(relative path, text)`` items with one voice; returns durations, failures and time."""
    start = time.perf_counter()
    done: dict[str, float] = {}
    failed: dict[str, str] = {}
    try:
        engine = open_engine(spec, threads=1)
        results = engine.synth([text for _, text in items])
    except Exception as exc:  # engine missing or broken: every item of the chunk is reported
        results = [exc] * len(items)
    for (rel, _), result in zip(items, results):
        try:
            if isinstance(result, Exception):
                raise result
            wave, sr = result
            pcm = condition_audio(wave, sr)
            seconds = len(pcm) / SAMPLE_RATE
            if not MIN_SECONDS <= seconds <= MAX_SECONDS:
                raise ValueError(f"duration {seconds:.1f} s outside {MIN_SECONDS}-{MAX_SECONDS} s")
            _write_atomic(Path(out) / rel, pcm)
            done[rel] = seconds
        except Exception as exc:
            failed[rel] = f"{type(exc).__name__}: {exc}"[:300]
    return {"voice": spec.name, "done": done, "failed": failed, "seconds": time.perf_counter() - start}


def _chunks(todo: list[Utterance], chunk_seconds: float) -> list[tuple[VoiceSpec, list[Utterance]]]:
    """Tasks of about ``chunk_seconds`` compute each, voices interleaved (slowest first in each round)."""
    by_voice: dict[str, list[Utterance]] = {}
    for utt in todo:
        by_voice.setdefault(utt.voice.name, []).append(utt)
    queues: list[tuple[VoiceSpec, list[list[Utterance]]]] = []
    for utts in by_voice.values():
        spec = utts[0].voice
        per_item = max(_estimate(spec, utts[0].sentence) * max(spec.rtf, 0.005), 1e-3)
        size = int(min(200, max(4, chunk_seconds / per_item)))
        queues.append((spec, [utts[i: i + size] for i in range(0, len(utts), size)]))
    queues.sort(key=lambda q: -q[0].rtf)
    tasks: list[tuple[VoiceSpec, list[Utterance]]] = []
    for round_ in range(max((len(q[1]) for q in queues), default=0)):
        tasks += [(spec, chunks[round_]) for spec, chunks in queues if round_ < len(chunks)]
    return tasks


# --------------------------------------------------------------------------- build
def _is_corpus(out: Path) -> bool:
    return (out / "manifest.jsonl").exists() or (out / "corpus.json").exists()


def build_corpus(cfg: CorpusConfig, log: Callable[[str], None] = print) -> CorpusReport:
    """Render the corpus into ``cfg.out`` (resumable), write the manifest and summary, return the report."""
    started = time.perf_counter()
    out = Path(cfg.out)
    if _is_corpus(out) and not cfg.resume:
        raise EngineError(f"{out} already holds a corpus: pass --resume to continue it, or choose an empty folder")
    out.mkdir(parents=True, exist_ok=True)
    sentences = list(cfg.sentences) if cfg.sentences is not None else build_sentences(
        cfg.seed, generated=cfg.generated_sentences)
    if not sentences:
        raise EngineError("no sentences: install Debian fortunes-min / fortunes or pass sentences")
    plan = plan_corpus(cfg, sentences)
    report = CorpusReport(out=out)
    todo = [u for u in plan if valid_wav(out / u.path) is None]
    report.skipped_existing = len(plan) - len(todo)
    planned_compute = sum(_estimate(u.voice, u.sentence) * u.voice.rtf for u in todo)
    log(f"{len(sentences)} sentences, {len(cfg.voices)} voices, {len(plan)} utterances planned "
        f"({report.skipped_existing} already on disk); about {planned_compute / 60 / max(cfg.jobs, 1):.0f} min "
        f"of rendering on {max(cfg.jobs, 1)} process(es)")
    tasks = _chunks(todo, cfg.chunk_seconds)
    bar = None
    if cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="utt", dynamic_ncols=True, smoothing=0.05)

    def collect(result: dict) -> None:
        voice = result["voice"]
        report.rendered += len(result["done"])
        report.compute[voice] = report.compute.get(voice, 0.0) + result["seconds"]
        report.rendered_seconds[voice] = report.rendered_seconds.get(voice, 0.0) + sum(result["done"].values())
        for rel, error in result["failed"].items():
            report.failures.append({"voice": voice, "id": Path(rel).stem, "error": error})
        if bar is not None:
            bar.update(len(result["done"]) + len(result["failed"]))
            bar.set_postfix(hours=f"{sum(report.rendered_seconds.values()) / 3600:.2f}", failed=len(report.failures))

    args = [(spec, [(u.path, u.sentence.text) for u in utts], str(out)) for spec, utts in tasks]
    prepare_engines(list({spec.name: spec for spec, _ in tasks}.values()))
    deadline = None if cfg.max_minutes is None else started + 60.0 * cfg.max_minutes

    def out_of_time(left: list) -> bool:
        if deadline is None or time.perf_counter() < deadline or not left:
            return False
        report.stopped_early = sum(len(a[1]) for a in left)
        left.clear()
        return True

    try:
        if cfg.jobs <= 1:
            _init_worker()
            queue = list(reversed(args))
            while queue and not out_of_time(queue):
                collect(render_chunk(*queue.pop()))
        else:
            with ProcessPoolExecutor(max_workers=cfg.jobs, mp_context=get_context("spawn"),
                                     initializer=_init_worker) as pool:
                pending = set()
                queue = list(reversed(args))
                while queue or pending:  # keep at most 2 tasks per worker in flight
                    out_of_time(queue)
                    while queue and len(pending) < 2 * cfg.jobs:
                        pending.add(pool.submit(render_chunk, *queue.pop()))
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        try:
                            collect(future.result())
                        except Exception as exc:  # a worker that died: its chunk is reported
                            report.failures.append({"voice": "?", "id": "?", "error": f"worker: {exc}"})
    finally:
        if bar is not None:
            bar.close()
        write_manifest(cfg, plan, sentences, report)
        report.wall_seconds = time.perf_counter() - started
        _write_summary(cfg, sentences, report)
    return report


def write_manifest(cfg: CorpusConfig, plan: Sequence[Utterance], sentences: Sequence[Sentence],
                   report: CorpusReport) -> None:
    """Rebuild ``manifest.jsonl`` from the planned utterances whose files are valid (atomically)."""
    out = Path(cfg.out)
    tmp = out / "manifest.jsonl.tmp"
    report.seconds, report.counts, report.split_seconds, report.bytes = {}, {}, {}, 0
    report.utterances = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for utt in plan:
            seconds = valid_wav(out / utt.path)
            if seconds is None:
                continue
            row = {
                "id": utt.id, "path": utt.path, "voice": utt.voice.name, "speaker": utt.voice.speaker,
                "engine": utt.voice.engine, "licence": utt.voice.licence, "text": utt.sentence.text,
                "raw_text": utt.sentence.raw, "sentence_id": utt.sentence.id, "source": utt.sentence.source,
                "duration": round(seconds, 4), "sample_rate": SAMPLE_RATE, "split": utt.split,
                "heldout_voice": utt.voice.heldout, "heldout_sentence": utt.heldout_sentence,
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            report.utterances += 1
            report.seconds[utt.voice.name] = report.seconds.get(utt.voice.name, 0.0) + seconds
            report.counts[utt.voice.name] = report.counts.get(utt.voice.name, 0) + 1
            report.split_seconds[utt.split] = report.split_seconds.get(utt.split, 0.0) + seconds
            report.bytes += (out / utt.path).stat().st_size
    os.replace(tmp, out / "manifest.jsonl")


def _write_summary(cfg: CorpusConfig, sentences: Sequence[Sentence], report: CorpusReport) -> None:
    test_ids = heldout_sentence_ids(sentences, cfg.test_fraction, cfg.seed)
    sources: dict[str, int] = {}
    for s in sentences:
        sources[s.source] = sources.get(s.source, 0) + 1
    summary = {
        "sample_rate": SAMPLE_RATE,
        "format": "WAV PCM 16-bit mono; silence trimmed to 0.1 s; speech RMS -20 dBFS, peak <= -1 dBFS",
        "manifest": "manifest.jsonl",
        "manifest_fields": list(MANIFEST_FIELDS),
        "seed": cfg.seed,
        "hours_requested": cfg.hours,
        "hours": round(report.hours, 4),
        "utterances": report.utterances,
        "bytes": report.bytes,
        "voices": [
            {**{k: v for k, v in asdict(spec).items() if k not in ("binary",)},
             "utterances": report.counts.get(spec.name, 0),
             "hours": round(report.seconds.get(spec.name, 0.0) / 3600, 4)}
            for spec in cfg.voices
        ],
        "heldout_voices": [v.name for v in cfg.voices if v.heldout],
        "sentences": {
            "total": len(sentences), "heldout": len(test_ids), "test_fraction": cfg.test_fraction,
            "sources": [{"name": name, "sentences": n, "licence": SOURCES.get(name, "")} for name, n in sources.items()],
        },
        "splits": {split: {"hours": round(s / 3600, 4)} for split, s in sorted(report.split_seconds.items())},
        "split_rule": "test = held-out voice or held-out sentence; train = everything else",
        "last_run": {
            "rendered": report.rendered, "skipped_existing": report.skipped_existing,
            "failures": len(report.failures), "wall_seconds": round(report.wall_seconds, 1),
            "not_started_time_limit": report.stopped_early,
            "compute_seconds": {k: round(v, 1) for k, v in report.compute.items()},
        },
        "failures": report.failures[:500],
    }
    tmp = Path(cfg.out) / "corpus.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, Path(cfg.out) / "corpus.json")


def format_report(cfg: CorpusConfig, report: CorpusReport) -> str:
    """The end-of-run summary: hours per voice, real-time factors, failures, size and wall time."""
    lines = [f"{'voice':<22} {'engine':<9} {'split':<5} {'utts':>6} {'hours':>6} {'x realtime':>10} {'failed':>6}"]
    failed: dict[str, list[dict]] = {}
    for f in report.failures:
        failed.setdefault(f["voice"], []).append(f)
    for spec in cfg.voices:
        compute = report.compute.get(spec.name, 0.0)
        rendered = report.rendered_seconds.get(spec.name, 0.0)
        speed = f"{rendered / compute:.1f}" if compute > 0 and rendered > 0 else "-"
        lines.append(f"{spec.name:<22} {spec.engine:<9} {'test' if spec.heldout else 'train':<5} "
                     f"{report.counts.get(spec.name, 0):>6} {report.seconds.get(spec.name, 0.0) / 3600:>6.2f} "
                     f"{speed:>10} {len(failed.get(spec.name, [])):>6}")
    lines.append(f"total: {report.utterances} utterances, {report.hours:.2f} h "
                 f"(train {report.split_seconds.get('train', 0.0) / 3600:.2f} h, "
                 f"test {report.split_seconds.get('test', 0.0) / 3600:.2f} h), {report.bytes / 1e9:.2f} GB, "
                 f"{report.rendered} rendered, {report.skipped_existing} already there, "
                 f"wall time {report.wall_seconds / 60:.1f} min")
    if report.stopped_early:
        lines.append(f"stopped at the {cfg.max_minutes:g} min limit: {report.stopped_early} utterances not started "
                     f"(rerun with --resume to add them)")
    if report.failures:
        lines.append(f"{len(report.failures)} failed (skipped; rerun with --resume to retry them):")
        for voice, items in failed.items():
            reasons: dict[str, int] = {}
            for item in items:
                reasons[item["error"]] = reasons.get(item["error"], 0) + 1
            for reason, n in sorted(reasons.items(), key=lambda r: -r[1])[:3]:
                lines.append(f"  {voice}: {n} x {reason}")
    else:
        lines.append("no failures")
    lines.append(f"manifest: {Path(cfg.out) / 'manifest.jsonl'}")
    return "\n".join(lines)
