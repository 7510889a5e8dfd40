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

from engine.melcodec.features import LOG_FLOOR, mel_filterbank

# (n_fft, mel bands): hop n_fft / 4 each
SCALES = ((64, 10), (128, 20), (256, 40), (512, 80), (1024, 80), (2048, 160))


class MultiScaleMelLoss(nn.Module):
    """``(prediction [B, S], target [B, S], sample mask [B, S]) -> mean L1 of log-mel over SCALES`` (+ log-magnitude L1)."""

    def __init__(self, sample_rate: int, scales: tuple[tuple[int, int], ...] = SCALES, magnitude_weight: float = 0.5):
        super().__init__()
        self.scales = scales
        self.magnitude_weight = magnitude_weight
        for n_fft, mels in scales:
            self.register_buffer(f"window_{n_fft}", torch.hann_window(n_fft), persistent=False)
            self.register_buffer(f"basis_{n_fft}", torch.from_numpy(mel_filterbank(sample_rate, n_fft, mels)), persistent=False)

    def _spectrum(self, wav: Tensor, n_fft: int) -> Tensor:
        window = getattr(self, f"window_{n_fft}")
        return torch.stft(wav, n_fft, n_fft // 4, window=window, center=True, pad_mode="reflect", return_complex=True).abs()  # [B, F, N]

    def forward(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        pred, target = pred.float(), target.float()
        if mask is not None:  # padding beyond an utterance's end scores nothing: zero it in both
            pred, target = pred * mask, target * mask
        total = pred.new_zeros(())
        for n_fft, _ in self.scales:
            basis = getattr(self, f"basis_{n_fft}")
            p, t = self._spectrum(pred, n_fft), self._spectrum(target, n_fft)
            total = total + (torch.log(torch.clamp(basis @ p, min=LOG_FLOOR)) - torch.log(torch.clamp(basis @ t, min=LOG_FLOOR))).abs().mean()
            if self.magnitude_weight and n_fft == 512:
                total = total + self.magnitude_weight * (torch.log(p.clamp(min=LOG_FLOOR)) - torch.log(t.clamp(min=LOG_FLOOR))).abs().mean()
        return total / len(self.scales)
