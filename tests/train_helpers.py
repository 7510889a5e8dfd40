"""Synthetic code corpora for the training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.train.codes_data import ShardWriter


def synthetic_codes(n_utts: int = 4, frames: int = 48, vocab: int = 12, seed: int = 0) -> list[np.ndarray]:
    """RVQ-1 tokens from a small vocabulary; the finer layers are a fixed function of the RVQ-1
    token and the utterance ("speaker"), like perceptual detail that depends on the voice."""
    rng = np.random.default_rng(seed)
    utts = []
    for u in range(n_utts):
        sem = rng.integers(0, vocab, frames) * 7 + 3
        layers = [sem] + [(sem * (l + 3) + 97 * (u % 2) + 11 * l) % 1024 for l in range(1, 8)]
        utts.append(np.stack(layers).astype(np.int16))
    return utts


def write_corpus(folder: Path, codec_name: str, utts: list[np.ndarray], shard_size: int = 3) -> Path:
    writer = ShardWriter(folder, codec_name, shard_size=shard_size)
    for i, codes in enumerate(utts):
        writer.add(f"utt{i:03d}", codes, text=f"utterance {i}", speaker=f"spk{i % 2}")
    writer.close()
    return folder
