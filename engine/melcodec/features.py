"""Log-mel spectrograms in torch: the encoder's input and the vocoder's mel.

The filterbank follows Slaney's auditory-toolbox mel scale with area normalisation (what
``librosa.filters.mel`` builds by default, which is what the HiFi-GAN checkpoints were trained
with); written here so that the codec needs no librosa at run time (tests compare the two).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

LOG_FLOOR = 1e-5  # HiFi-GAN's dynamic-range compression: log(clamp(x, 1e-5))


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = f / f_sp
    min_log_hz, logstep = 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, mels)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """[n_mels, n_fft // 2 + 1] triangular filters on the Slaney mel scale, area-normalised."""
    fmax = sample_rate / 2 if fmax is None else fmax
    fft_freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_points = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_points)
    ramps = mel_points[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_points[2 : n_mels + 2] - mel_points[:n_mels]))[:, None]
    return weights.astype(np.float32)


class LogMel(nn.Module):
    """Waveform [B, S] -> log-magnitude mel [B, n_mels, 1 + S // hop] (centred STFT, reflect padding)."""

    def __init__(self, sample_rate: int, n_fft: int, hop: int, n_mels: int, fmax: float | None = None):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("basis", torch.from_numpy(mel_filterbank(sample_rate, n_fft, n_mels, 0.0, fmax)), persistent=False)

    def magnitude(self, wav: Tensor) -> Tensor:
        """Waveform [B, S] -> linear STFT magnitude [B, n_fft // 2 + 1, 1 + S // hop]."""
        return torch.stft(wav.float(), self.n_fft, self.hop, window=self.window, center=True, pad_mode="reflect", return_complex=True).abs()

    def from_magnitude(self, mag: Tensor) -> Tensor:
        """STFT magnitude [B, F, N] -> log mel [B, n_mels, N]."""
        return torch.log(torch.clamp(self.basis @ mag, min=LOG_FLOOR))

    def forward(self, wav: Tensor) -> Tensor:
        return self.from_magnitude(self.magnitude(wav))
