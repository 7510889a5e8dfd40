"""Speech recognition through the chain (codec RVQ-1 units -> the semantic model's ASR), scored by WER.

Every item of a manifest that has audio and its text (a TTS item's ``reference`` recording, or a VC
item's ``source``) is transcribed twice: by the engine (``Engine.transcribe``: what the semantic
model hears in the units) and by the Whisper scorer on the same audio (how clear the audio itself is:
the floor the units cannot beat). Outputs in ``out_dir``: ``items.csv`` (one row per system and item)
and ``summary.md`` / ``summary.json`` (corpus WER per system).
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

from engine.audio import load_audio
from engine.errors import EngineError, ModelUnavailableError
from engine.eval.testsets import EvalItem
from engine.eval.textnorm import corpus_stats, normalize_for_wer, wer_stats

SEMANTIC = "semantic-asr"  # the engine's ASR (units -> text)
WHISPER = "whisper"  # the scorer on the same audio


@dataclass
class AsrRow:
    system: str
    id: str
    wer: float
    errors: int
    reference_words: int
    reference_text: str
    hypothesis: str
    error: str = ""


def audio_of(item: EvalItem) -> str | None:
    """The recording of an item's text: its ``reference`` (TTS set) or ``source`` (VC set)."""
    return item.reference or item.source


def evaluate_asr(items: Sequence[EvalItem], engine, whisper, out_dir: str | Path, *, seed: int = 0,
                 progress: Callable[[int, int, str], None] | None = None) -> list[AsrRow]:
    """Transcribe every item with audio and text by the engine and by ``whisper``; write the report."""
    from engine.pipeline import GenerationOptions

    usable = [it for it in items if audio_of(it) and it.text]
    if not usable:
        raise EngineError("no item of this manifest has both audio (reference or source) and its text")
    engine.semantic_for("asr")  # missing weights stop the run before any work
    rows: list[AsrRow] = []
    for n, item in enumerate(usable, 1):
        wav = load_audio(audio_of(item))
        for system in (SEMANTIC, WHISPER):
            error = ""
            try:
                hyp = engine.transcribe(wav, options=GenerationOptions(seed=seed)) if system == SEMANTIC else whisper.transcribe(wav)
            except ModelUnavailableError:
                raise
            except EngineError as exc:
                hyp, error = "", str(exc)
            stats = wer_stats(item.text, hyp)
            rows.append(AsrRow(system, item.id, stats.wer, stats.errors, stats.reference_words, normalize_for_wer(item.text),
                               normalize_for_wer(hyp), error))
        if progress:
            progress(n, len(usable), item.id)
    write_asr_report(rows, out_dir, meta={"items": len(usable), "asr_scorer": whisper.name, "profile": engine.config.profile})
    return rows


def summarize_asr(rows: Sequence[AsrRow]) -> dict[str, float]:
    """Corpus WER (all errors / all reference words) per system, in first-seen order."""
    out: dict[str, float] = {}
    for system in dict.fromkeys(r.system for r in rows):
        group = [r for r in rows if r.system == system]
        out[system] = corpus_stats(group).wer
    return out


def asr_table(rows: Sequence[AsrRow]) -> str:
    lines = ["| system | items | WER % |", "|---|---:|---:|"]
    for system, wer in summarize_asr(rows).items():
        lines.append(f"| {system} | {sum(r.system == system for r in rows)} | {100 * wer:.1f} |")
    return "\n".join(lines)


def write_asr_report(rows: Sequence[AsrRow], out_dir: str | Path, meta: dict) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "items.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(AsrRow.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    text = ["# Speech recognition through the semantic model", ""] + [f"- {k.replace('_', ' ')}: {v}" for k, v in meta.items()]
    text += ["", f"{SEMANTIC}: audio -> codec RVQ-1 units -> the semantic model's ASR. {WHISPER}: the scorer on the same "
             "audio (the floor). WER: corpus word error rate, both sides normalised.", "", asr_table(rows), ""]
    (out / "summary.md").write_text("\n".join(text), encoding="utf-8")
    (out / "summary.json").write_text(json.dumps({"meta": meta, "wer": summarize_asr(rows)}, indent=2), encoding="utf-8")
