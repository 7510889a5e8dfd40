"""Waveform losses of the codec's istft head (``train-codec`` with ``trainable: wave``).

A multi-scale log-mel L1 (the reconstruction term of DAC and Vocos): the same pair of waveforms
compared at several STFT sizes, from 4 ms windows (onsets, plosives) to 128 ms (harmonics), each with
its own mel resolution. Overlapping frames at many sizes also constrain the phase: a waveform whose
frames do not agree with each other shows up as smeared energy at the other window sizes. An L1 on
the log magnitude of the finest linear spectrum adds detail above the mel bands' resolution.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from engine.melcodec.features import LOG_FLOOR, LogMel

# (n_fft, mel bands): hop n_fft / 4 each
SCALES = ((64, 10), (128, 20), (256, 40), (512, 80), (1024, 80), (2048, 160))
MAGNITUDE_N_FFT = 512  # the scale whose linear log magnitude is also compared


class MultiScaleMelLoss(nn.Module):
    """``(prediction [B, S], target [B, S], sample mask [B, S]) -> mean L1 of log-mel over SCALES`` (+ log-magnitude L1)."""

    def __init__(self, sample_rate: int, scales: tuple[tuple[int, int], ...] = SCALES, magnitude_weight: float = 0.5):
        super().__init__()
        self.magnitude_weight = magnitude_weight
        self.mels = nn.ModuleList(LogMel(sample_rate, n_fft, n_fft // 4, mels) for n_fft, mels in scales)

    def forward(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        pred, target = pred.float(), target.float()
        if mask is not None:  # padding beyond an utterance's end scores nothing: zero it in both
            pred, target = pred * mask, target * mask
        total = pred.new_zeros(())
        for mel in self.mels:
            p, t = mel.magnitude(pred), mel.magnitude(target)  # [B, F, N]
            total = total + (mel.from_magnitude(p) - mel.from_magnitude(t)).abs().mean()
            if self.magnitude_weight and mel.n_fft == MAGNITUDE_N_FFT:
                total = total + self.magnitude_weight * (torch.log(p.clamp(min=LOG_FLOOR)) - torch.log(t.clamp(min=LOG_FLOOR))).abs().mean()
        return total / len(self.mels)
