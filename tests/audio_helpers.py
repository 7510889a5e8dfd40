"""Synthetic test audio (no files needed)."""

from __future__ import annotations

import numpy as np


def voiced(seconds: float, sr: int = 16000, f0: float = 140.0, seed: int = 0, amp: float = 0.3) -> np.ndarray:
    """A speech-like harmonic tone with a syllable-rate envelope and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    pitch = f0 * (1 + 0.1 * np.sin(2 * np.pi * 0.5 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / sr
    env = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    sig = sum(np.sin(k * phase) / k for k in range(1, 6)) * env
    return (amp * sig / np.max(np.abs(sig)) + 0.003 * rng.standard_normal(t.size)).astype(np.float32)
