"""Codec evaluation (``python -m engine eval codec``) on a demo corpus's held-out test split.

For each test utterance: resynthesis from all 8 RVQ layers and from RVQ-1 alone, scored with
Whisper (WER against the corpus text, and the original audio's own WER beside it) and the speaker
encoder (similarity of each resynthesis to the original). The RVQ split is checked with a
nearest-centroid speaker classifier on embeddings mean-pooled over each second (leave one utterance
out): RVQ-1 (semantic) against RVQ-2..8 (perceptual); if RVQ-1 carries content and not the voice,
its accuracy is clearly lower.
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
            f"| speaker accuracy (nearest centroid on 1 s segments, {self.speaker_classes} held-out voices) from RVQ-1 | {self.speaker_acc_rvq1 * 100:.1f} % |",
            f"| speaker accuracy from RVQ-2..8 | {self.speaker_acc_rvq2_8 * 100:.1f} % |",
            f"| speaker accuracy over all {self.all_voices_classes} test-split voices, RVQ-1 / RVQ-2..8 | "
            f"{self.all_voices_acc_rvq1 * 100:.1f} % / {self.all_voices_acc_rvq2_8 * 100:.1f} % |",
            f"| encode + decode speed | {self.realtime_factor:.2f}x real time "
            f"(encode {self.encode_seconds:.1f} s, decode {self.decode_seconds:.1f} s for {self.audio_seconds:.1f} s of audio) |",
        ]
        return "\n".join(rows)


def read_test_items(corpus: str | Path, heldout_voices_only: bool = True) -> list[CodecItem]:
    """The corpus's test split (held-out voices only by default), read as extraction reads it."""
    return read_split_items(corpus, "test", heldout_voices_only)


def read_split_items(corpus: str | Path, split: str, heldout_voices_only: bool = False) -> list[CodecItem]:
    """One split of the corpus (``train`` or ``test``), read as extraction reads it."""
    from engine.train.extract import corpus_manifest_path, read_corpus_rows, select_split

    base = corpus_manifest_path(corpus).parent
    rows, _ = select_split(read_corpus_rows(base), split)
    return [CodecItem(str(r["id"]), str(r["voice"]), str(r["text"]), base / r["path"], bool(r["heldout_voice"]))
            for r in rows if r["heldout_voice"] or not heldout_voices_only]


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


def nearest_centroid_accuracy(features: np.ndarray, labels: list[str], groups: list[str] | None = None) -> float:
    """Leave-one-out nearest-centroid accuracy (cosine) of vectors [N, D] by label. With ``groups``
    (e.g. the utterance of each segment), all vectors of a vector's own group are left out of its
    class centroid, so segments of one utterance never vouch for each other."""
    x = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-9)
    labels_arr = np.asarray(labels)
    groups_arr = np.asarray(groups if groups is not None else [str(i) for i in range(len(labels))])
    classes = sorted(set(labels))
    sums = {c: x[labels_arr == c].sum(0) for c in classes}
    counts = {c: int((labels_arr == c).sum()) for c in classes}
    group_sums = {g: x[groups_arr == g].sum(0) for g in set(groups_arr.tolist())}
    group_counts = {g: int((groups_arr == g).sum()) for g in group_sums}
    correct = 0
    for i, label in enumerate(labels):
        best, best_score = None, -np.inf
        for c in classes:
            s, n = sums[c], counts[c]
            if c == label:
                g = groups_arr[i]
                s, n = s - group_sums[g], n - group_counts[g]
                if n < 1:
                    continue
            centre = s / n
            score = float(np.dot(x[i], centre) / max(np.linalg.norm(centre), 1e-9))
            if score > best_score:
                best, best_score = c, score
        correct += best == label
    return correct / max(len(labels), 1)


def segment_pool(emb: np.ndarray, frames: int) -> np.ndarray:
    """Mean of each whole ``frames``-long segment of [T, D] (at least one: the whole utterance)."""
    n = emb.shape[0] // frames
    if n == 0:
        return emb.mean(0, keepdims=True)
    return emb[: n * frames].reshape(n, frames, -1).mean(1)


SEGMENT_FRAMES = 50  # 1 s: the speaker classifier pools each second of an utterance


def pooled_embeddings(codec, items: list[CodecItem]) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Mean-pooled RVQ-1 and RVQ-2..8 embeddings [N, D] of each 1 s segment, voice labels and utterance ids."""
    p1, p2, labels, groups = [], [], [], []
    for item in items:
        enc = codec.encode(load_audio(item.path))
        a, b = segment_pool(enc.semantic_emb.numpy(), SEGMENT_FRAMES), segment_pool(enc.perceptual_emb.numpy(), SEGMENT_FRAMES)
        p1.append(a)
        p2.append(b)
        labels += [item.voice] * len(a)
        groups += [item.id] * len(a)
    return np.concatenate(p1), np.concatenate(p2), labels, groups


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
    seg_labels: list[str] = []
    seg_groups: list[str] = []
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
        seg1 = segment_pool(enc.semantic_emb.numpy(), SEGMENT_FRAMES)
        pooled1.append(seg1)
        pooled2.append(segment_pool(enc.perceptual_emb.numpy(), SEGMENT_FRAMES))
        labels.append(item.voice)
        seg_labels += [item.voice] * len(seg1)
        seg_groups += [item.id] * len(seg1)
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
        speaker_acc_rvq1=nearest_centroid_accuracy(np.concatenate(pooled1), seg_labels, seg_groups) if labels else float("nan"),
        speaker_acc_rvq2_8=nearest_centroid_accuracy(np.concatenate(pooled2), seg_labels, seg_groups) if labels else float("nan"),
        speaker_classes=len(set(labels)), audio_seconds=audio_s, encode_seconds=enc_s, decode_seconds=dec_s,
        asr=getattr(asr, "name", ""), speaker_encoder=getattr(speaker, "name", ""), per_voice=per_voice,
    )
    if classifier_items:
        a1, a2, lab, grp = pooled_embeddings(codec, classifier_items)
        report.all_voices_acc_rvq1 = nearest_centroid_accuracy(a1, lab, grp)
        report.all_voices_acc_rvq2_8 = nearest_centroid_accuracy(a2, lab, grp)
        report.all_voices_classes = len(set(lab))
    if out is not None:
        (out / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (out / "summary.json").write_text(json.dumps({**asdict(report), "realtime_factor": report.realtime_factor}, indent=2))
        (out / "summary.md").write_text(report.markdown() + "\n")
    return report
