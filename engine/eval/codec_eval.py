"""Codec evaluation (``python -m engine eval codec``) on a demo corpus's held-out test split.

For each test utterance: resynthesis from all 8 RVQ layers and from RVQ-1 alone, scored with
Whisper (WER against the corpus text, and the original audio's own WER beside it) and the speaker
encoder (similarity of each resynthesis to the original). The RVQ split is checked with a
nearest-centroid speaker classifier on mean-pooled embeddings: RVQ-1 (semantic) against RVQ-2..8
(perceptual); if RVQ-1 carries content and not the voice, its accuracy is clearly lower.
Speed: encode and decode time against audio time (a benchmark line, not a test).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from engine.audio import SAMPLE_RATE, load_audio, save_wav
from engine.eval.speaker import SpeakerEncoder, cosine
from engine.eval.textnorm import WerStats, wer_stats

log = logging.getLogger(__name__)


@dataclass
class CodecItem:
    id: str
    voice: str
    text: str
    path: Path
    heldout_voice: bool


@dataclass
class CodecReport:
    codec: str
    items: int
    voices: list[str]
    wer_original: float
    wer_resynth8: float
    wer_resynth1: float
    sim_resynth8: float  # mean speaker similarity of the 8-layer resynthesis to the original
    sim_resynth1: float
    speaker_acc_rvq1: float  # nearest-centroid accuracy from mean-pooled RVQ-1 embeddings
    speaker_acc_rvq2_8: float
    speaker_classes: int
    audio_seconds: float
    encode_seconds: float
    decode_seconds: float
    asr: str = ""
    speaker_encoder: str = ""
    per_voice: dict = field(default_factory=dict)
    #: the same classifier over every voice of the test split (held-out sentences of training voices too)
    all_voices_acc_rvq1: float = float("nan")
    all_voices_acc_rvq2_8: float = float("nan")
    all_voices_classes: int = 0

    @property
    def realtime_factor(self) -> float:
        """Audio seconds per second of encode + decode (8 layers)."""
        return self.audio_seconds / max(self.encode_seconds + self.decode_seconds, 1e-9)

    def markdown(self) -> str:
        rows = [
            "| measure | value |", "|---|---|",
            f"| test utterances (voices) | {self.items} ({', '.join(self.voices)}) |",
            f"| WER original audio | {self.wer_original * 100:.1f} % |",
            f"| WER resynthesis, 8 layers | {self.wer_resynth8 * 100:.1f} % |",
            f"| WER resynthesis, RVQ-1 only | {self.wer_resynth1 * 100:.1f} % |",
            f"| speaker similarity to original, 8 layers | {self.sim_resynth8:.3f} |",
            f"| speaker similarity to original, RVQ-1 only | {self.sim_resynth1:.3f} |",
            f"| speaker accuracy (nearest centroid, {self.speaker_classes} voices) from RVQ-1 | {self.speaker_acc_rvq1 * 100:.1f} % |",
            f"| speaker accuracy from RVQ-2..8 | {self.speaker_acc_rvq2_8 * 100:.1f} % |",
            f"| speaker accuracy over all {self.all_voices_classes} test-split voices, RVQ-1 / RVQ-2..8 | "
            f"{self.all_voices_acc_rvq1 * 100:.1f} % / {self.all_voices_acc_rvq2_8 * 100:.1f} % |",
            f"| encode + decode speed | {self.realtime_factor:.2f}x real time "
            f"(encode {self.encode_seconds:.1f} s, decode {self.decode_seconds:.1f} s for {self.audio_seconds:.1f} s of audio) |",
        ]
        return "\n".join(rows)


def read_test_items(corpus: str | Path, heldout_voices_only: bool = True) -> list[CodecItem]:
    """The corpus's test split (held-out voices only by default) from ``manifest.jsonl``."""
    corpus = Path(corpus)
    items = []
    with open(corpus / "manifest.jsonl", encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            if row.get("split") != "test":
                continue
            held = bool(row.get("heldout_voice", False))
            if heldout_voices_only and not held:
                continue
            items.append(CodecItem(str(row["id"]), str(row["voice"]), str(row["text"]), corpus / row["path"], held))
    return items


def pick_items(items: list[CodecItem], per_voice: int, seed: int = 0) -> list[CodecItem]:
    """Up to ``per_voice`` items of each voice (a seeded sample; sorted by voice, id)."""
    rng = np.random.default_rng(seed)
    out = []
    for voice in sorted({i.voice for i in items}):
        mine = sorted((i for i in items if i.voice == voice), key=lambda i: i.id)
        if per_voice and len(mine) > per_voice:
            mine = [mine[k] for k in sorted(rng.choice(len(mine), per_voice, replace=False))]
        out.extend(mine)
    return out


def nearest_centroid_accuracy(features: np.ndarray, labels: list[str]) -> float:
    """Leave-one-out nearest-centroid accuracy (cosine) of utterance vectors [N, D] by label."""
    x = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-9)
    labels_arr = np.asarray(labels)
    classes = sorted(set(labels))
    sums = {c: x[labels_arr == c].sum(0) for c in classes}
    counts = {c: int((labels_arr == c).sum()) for c in classes}
    correct = 0
    for i, label in enumerate(labels):
        best, best_score = None, -np.inf
        for c in classes:
            s, n = sums[c], counts[c]
            if c == label:
                if n < 2:
                    continue
                s, n = s - x[i], n - 1
            score = float(np.dot(x[i], s / n) / max(np.linalg.norm(s / n), 1e-9))
            if score > best_score:
                best, best_score = c, score
        correct += best == label
    return correct / max(len(labels), 1)


def pooled_embeddings(codec, items: list[CodecItem]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Mean-pooled RVQ-1 and RVQ-2..8 embeddings [N, D] of each item, and the voice labels."""
    p1, p2 = [], []
    for item in items:
        enc = codec.encode(load_audio(item.path))
        p1.append(enc.semantic_emb.mean(0).numpy())
        p2.append(enc.perceptual_emb.mean(0).numpy())
    return np.stack(p1), np.stack(p2), [i.voice for i in items]


def evaluate_codec(codec, items: list[CodecItem], asr, speaker: SpeakerEncoder, out_dir: str | Path | None = None,
                   progress: Callable[[int, int, str], None] | None = None,
                   classifier_items: list[CodecItem] | None = None) -> CodecReport:
    """Resynthesise and score every item (see the module docstring); ``classifier_items`` (encoded
    only) give the speaker classifier over more voices."""
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        (out / "audio").mkdir(parents=True, exist_ok=True)
    wer = {"orig": WerStats(), "r8": WerStats(), "r1": WerStats()}
    sims8, sims1, pooled1, pooled2, labels, rows = [], [], [], [], [], []
    audio_s = enc_s = dec_s = 0.0
    for n, item in enumerate(items, 1):
        wav = load_audio(item.path)
        t0 = time.perf_counter()
        enc = codec.encode(wav)
        t1 = time.perf_counter()
        y8 = codec.decode(enc.complete_emb).numpy()
        t2 = time.perf_counter()
        y1 = codec.decode(enc.semantic_emb).numpy()
        audio_s += wav.size / SAMPLE_RATE
        enc_s += t1 - t0
        dec_s += t2 - t1
        hyps = {"orig": asr.transcribe(wav), "r8": asr.transcribe(y8), "r1": asr.transcribe(y1)}
        for key, hyp in hyps.items():
            wer[key] = wer[key] + wer_stats(item.text, hyp)
        e0 = speaker.embed(wav)
        s8, s1 = cosine(e0, speaker.embed(y8)), cosine(e0, speaker.embed(y1))
        sims8.append(s8)
        sims1.append(s1)
        pooled1.append(enc.semantic_emb.mean(0).numpy())
        pooled2.append(enc.perceptual_emb.mean(0).numpy())
        labels.append(item.voice)
        rows.append({"id": item.id, "voice": item.voice, "text": item.text, **{f"asr_{k}": v for k, v in hyps.items()},
                     "sim8": s8, "sim1": s1})
        if out is not None:
            save_wav(out / "audio" / f"{item.id}_rvq8.wav", y8)
            save_wav(out / "audio" / f"{item.id}_rvq1.wav", y1)
        if progress:
            progress(n, len(items), f"{item.id}: sim8 {s8:.3f}, sim1 {s1:.3f}")
    per_voice = {}
    for voice in sorted(set(labels)):
        idx = [i for i, v in enumerate(labels) if v == voice]
        per_voice[voice] = {"items": len(idx), "sim8": float(np.mean([sims8[i] for i in idx])), "sim1": float(np.mean([sims1[i] for i in idx]))}
    report = CodecReport(
        codec=codec.name, items=len(items), voices=sorted(set(labels)),
        wer_original=wer["orig"].wer, wer_resynth8=wer["r8"].wer, wer_resynth1=wer["r1"].wer,
        sim_resynth8=float(np.mean(sims8)) if sims8 else float("nan"), sim_resynth1=float(np.mean(sims1)) if sims1 else float("nan"),
        speaker_acc_rvq1=nearest_centroid_accuracy(np.stack(pooled1), labels) if labels else float("nan"),
        speaker_acc_rvq2_8=nearest_centroid_accuracy(np.stack(pooled2), labels) if labels else float("nan"),
        speaker_classes=len(set(labels)), audio_seconds=audio_s, encode_seconds=enc_s, decode_seconds=dec_s,
        asr=getattr(asr, "name", ""), speaker_encoder=getattr(speaker, "name", ""), per_voice=per_voice,
    )
    if classifier_items:
        a1, a2, lab = pooled_embeddings(codec, classifier_items)
        report.all_voices_acc_rvq1 = nearest_centroid_accuracy(a1, lab)
        report.all_voices_acc_rvq2_8 = nearest_centroid_accuracy(a2, lab)
        report.all_voices_classes = len(set(lab))
    if out is not None:
        (out / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (out / "summary.json").write_text(json.dumps({**asdict(report), "realtime_factor": report.realtime_factor}, indent=2))
        (out / "summary.md").write_text(report.markdown() + "\n")
    return report
