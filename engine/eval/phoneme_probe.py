"""How much of the words a codec's RVQ-1 carries: a linear CTC phoneme probe.

``python -m engine eval phonemes --profile demo --corpus DIR`` (and ``eval codec --phoneme-probe N``).
A single linear layer, frame by frame, is trained with CTC to read the espeak-ng phonemes of the
transcript off frozen codec embeddings of training-voice utterances, then scored on the held-out
voices' test utterances: phoneme error rate (PER, greedy CTC decoding). The same probe on RVQ-1
(what the semantic model and the flow model see) and on the complete embedding (all 8 layers) shows
how much content RVQ-1 alone keeps. It works for any codec: v1 of the demo codec has no phoneme head,
and comparing codecs needs the same probe on each. A codec trained with a phoneme head (v2) is also
scored with its own head.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.audio import load_audio

log = logging.getLogger(__name__)


@dataclass
class ProbeReport:
    train_items: int
    test_items: int
    symbols: int
    steps: int
    per_rvq1: float  # phoneme error rate of the linear probe on RVQ-1 embeddings (held-out voices)
    per_complete: float  # the same probe trained on the complete (8-layer) embeddings
    per_head: float = float("nan")  # the codec's own phoneme head (codec v2), nan when it has none

    def markdown(self) -> str:
        head = "n/a (no phoneme head)" if np.isnan(self.per_head) else f"{self.per_head * 100:.1f} %"
        return "\n".join([
            "| phoneme probe (linear CTC, held-out voices) | PER |", "|---|---|",
            f"| RVQ-1 | {self.per_rvq1 * 100:.1f} % |",
            f"| complete (8 layers) | {self.per_complete * 100:.1f} % |",
            f"| the codec's own phoneme head on RVQ-1 | {head} |",
            f"| (trained on {self.train_items} training-voice utterances, {self.steps} steps; "
            f"{self.test_items} test utterances; {self.symbols} symbols) | |",
        ])


def _embeddings(codec, paths: list[Path]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """RVQ-1 and complete embeddings [T, D] of each file."""
    rvq1, complete = [], []
    for path in paths:
        enc = codec.encode(load_audio(path))
        rvq1.append(enc.semantic_emb.float())
        complete.append(enc.complete_emb.float())
    return rvq1, complete


def _batch(feats: list[torch.Tensor], targets: list[list[int]], idx: np.ndarray):
    lengths = torch.tensor([feats[i].shape[0] for i in idx])
    x = torch.zeros(len(idx), int(lengths.max()), feats[0].shape[1])
    for k, i in enumerate(idx):
        x[k, : feats[i].shape[0]] = feats[i]
    y = torch.tensor([s for i in idx for s in targets[i]], dtype=torch.long)
    return x, lengths, y, torch.tensor([len(targets[i]) for i in idx])


def error_rate(logits: list[torch.Tensor], targets: list[list[int]]) -> float:
    """Greedy-CTC phoneme error rate of per-utterance logits [T, V] against ``targets``."""
    from engine.train.phonemes import ctc_greedy, edit_distance

    errors = sum(edit_distance(ctc_greedy(lg.argmax(-1).tolist()), t) for lg, t in zip(logits, targets))
    return errors / max(sum(len(t) for t in targets), 1)


def train_probe(feats: list[torch.Tensor], targets: list[list[int]], symbols: int, steps: int = 600, batch: int = 16,
                lr: float = 1e-2, seed: int = 0) -> torch.nn.Module:
    """A standardising linear CTC probe [T, D] -> [T, symbols + 1] fitted on ``feats``."""
    torch.manual_seed(seed)
    allf = torch.cat(feats)
    mean, std = allf.mean(0), allf.std(0).clamp(min=1e-4)
    probe = torch.nn.Sequential(_Standardise(mean, std), torch.nn.Linear(allf.shape[1], symbols + 1))
    opt = torch.optim.Adam(probe.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        idx = rng.choice(len(feats), size=min(batch, len(feats)), replace=False)
        x, lengths, y, ylen = _batch(feats, targets, idx)
        logp = probe(x).log_softmax(-1).transpose(0, 1)  # [T, B, V]
        loss = F.ctc_loss(logp, y, lengths, ylen, blank=0, zero_infinity=True)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return probe.eval()


class _Standardise(torch.nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def phoneme_probe(codec, corpus: str | Path, train_per_voice: int = 30, test_per_voice: int = 20, steps: int = 600,
                  seed: int = 0) -> ProbeReport:
    """Fit the probe on training-voice utterances of ``corpus``'s train split and score it on its
    held-out voices' test utterances (see the module docstring)."""
    from engine.eval.codec_eval import pick_items, read_split_items, read_test_items
    from engine.train.phonemes import build_inventory, encode_ipa, ensure_phonemes

    train = pick_items([i for i in read_split_items(corpus, "train") if i.text], train_per_voice, seed)
    test = pick_items(read_test_items(corpus, heldout_voices_only=True), test_per_voice, seed)
    if not train or not test:
        raise ValueError(f"{corpus}: the phoneme probe needs training utterances with text and held-out test utterances; "
                         "build the corpus with `python -m engine demo corpus`")
    ipa = ensure_phonemes(corpus, {i.id: i.text for i in train + test})
    model = getattr(codec, "model", None)
    head = getattr(model, "phoneme_head", None)
    inventory = list(model.cfg.phonemes) if head is not None else build_inventory(ipa[u.id] for u in train)
    y_train = [encode_ipa(ipa[u.id], inventory) for u in train]
    y_test = [encode_ipa(ipa[t.id], inventory) for t in test]
    log.info("phoneme probe: encoding %d training and %d test utterances", len(train), len(test))
    tr1, trc = _embeddings(codec, [u.path for u in train])
    te1, tec = _embeddings(codec, [t.path for t in test])
    per = {}
    for name, tr, te in (("rvq1", tr1, te1), ("complete", trc, tec)):
        probe = train_probe(tr, y_train, len(inventory), steps=steps, seed=seed)
        with torch.no_grad():
            per[name] = error_rate([probe(x) for x in te], y_test)
    per_head = float("nan")
    if head is not None:
        p = next(head.parameters())
        with torch.no_grad():
            per_head = error_rate([head(x.to(p.device, p.dtype)).float().cpu() for x in te1], y_test)
    return ProbeReport(len(train), len(test), len(inventory), steps, per["rvq1"], per["complete"], per_head)
