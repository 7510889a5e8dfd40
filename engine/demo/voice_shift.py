"""New voices from one recording: pitch and vocal-tract length changed independently.

Speed perturbation (``augment.speed_perturb``) scales pitch and formants by the same factor, so its
copies stay near the voice they come from. Here they move apart, as they do between speakers:

1. the utterance is resampled so that it plays ``pitch`` times faster: F0, formants and tempo all
   scale by ``pitch``;
2. its spectral envelope (the "true envelope" of a 32 ms STFT: cepstral smoothing iterated so that
   it rests on the harmonic peaks, not on their mean with the valleys between them) is warped in
   frequency by ``formant / pitch``, so the formants end ``formant`` times where they were while
   the harmonics (the pitch) stay where step 1 put them; ``tilt_db`` adds a spectral slope in dB per
   octave around 1 kHz (a brighter or darker voice).

The warp is a gain per STFT bin (new envelope minus old, clipped to +-24 dB) applied with the
frame's own phase, so nothing is re-estimated or vocoded: the source's articulation and timing
stay intact. ``pitch`` 0.7-1.45 and ``formant`` 0.85-1.2 keep speech natural (outside that the
result sounds like a cartoon or a giant).
"""

from __future__ import annotations

import numpy as np
import torch

SAMPLE_RATE = 16000
N_FFT = 512  # 32 ms: resolves the harmonics of a 70 Hz voice, short enough to follow the formants
HOP = 128
LIFTER = 40  # cepstral coefficients kept for the envelope (quefrency < 2.5 ms, below a 400 Hz pitch period)
TRUE_ENVELOPE_ITERATIONS = 6
MAX_GAIN_DB = 24.0
PITCH_RANGE = (0.7, 1.45)
FORMANT_RANGE = (0.85, 1.2)


def _smooth(logmag: torch.Tensor) -> torch.Tensor:
    """Cepstrally smoothed log magnitude: [frames, bins] -> [frames, bins]."""
    cep = torch.fft.irfft(logmag, n=N_FFT, dim=-1)  # [frames, N_FFT], real and even
    lifter = torch.zeros(N_FFT, dtype=cep.dtype)
    lifter[0] = 1.0
    lifter[1:LIFTER] = 2.0  # the symmetric half folded onto the first
    return torch.fft.rfft(cep * lifter, dim=-1)[..., : logmag.shape[-1]].real


def _envelope(logmag: torch.Tensor) -> torch.Tensor:
    """True envelope (Roebel & Rodet 2005): smooth, raise the spectrum to the smooth curve where it
    lies below it, smooth again; the curve climbs onto the harmonic peaks. [frames, bins]."""
    env = _smooth(logmag)
    for _ in range(TRUE_ENVELOPE_ITERATIONS):
        env = _smooth(torch.maximum(logmag, env))
    return env


def _warp(env: torch.Tensor, factor: float) -> torch.Tensor:
    """``env`` stretched along frequency by ``factor`` (a peak at bin k moves to k * factor):
    new[k] = env[k / factor], linearly interpolated, the last bin held beyond Nyquist."""
    bins = env.shape[-1]
    src = torch.arange(bins, dtype=env.dtype) / factor
    src = src.clamp(max=bins - 1)
    lo = src.floor().long().clamp(max=bins - 2)
    frac = src - lo.to(env.dtype)
    return env[..., lo] * (1 - frac) + env[..., lo + 1] * frac


def shift_voice(wave: np.ndarray, pitch: float, formant: float, tilt_db: float = 0.0) -> np.ndarray:
    """16 kHz float audio [samples] -> float64 audio of another voice: F0 x ``pitch``, formants x
    ``formant``, tempo x ``pitch`` (``len / pitch`` samples), plus ``tilt_db`` dB per octave of
    spectral slope. The level is left as it comes out (the corpus's ``condition_audio`` sets it)."""
    import soxr

    if not PITCH_RANGE[0] <= pitch <= PITCH_RANGE[1]:
        raise ValueError(f"pitch factor {pitch} is outside {PITCH_RANGE[0]}..{PITCH_RANGE[1]}")
    if not FORMANT_RANGE[0] <= formant <= FORMANT_RANGE[1]:
        raise ValueError(f"formant factor {formant} is outside {FORMANT_RANGE[0]}..{FORMANT_RANGE[1]}")
    x = np.asarray(wave, np.float64).ravel()
    y = soxr.resample(x, SAMPLE_RATE * pitch, SAMPLE_RATE, quality="HQ") if pitch != 1.0 else x
    if y.size < N_FFT:
        raise ValueError(f"audio too short to reshape ({y.size} samples)")
    wav = torch.from_numpy(y)
    window = torch.hann_window(N_FFT, dtype=torch.float64)
    spec = torch.stft(wav, N_FFT, HOP, window=window, return_complex=True).T  # [frames, bins]
    logmag = torch.log(spec.abs().clamp(min=1e-7))
    env = _envelope(logmag)
    gain = _warp(env, formant / pitch) - env  # natural-log units
    if tilt_db:
        freqs = torch.arange(logmag.shape[-1], dtype=torch.float64) * (SAMPLE_RATE / N_FFT)
        octaves = torch.log2(freqs.clamp(min=62.5) / 1000.0)
        gain = gain + (tilt_db * octaves / 20.0 * np.log(10.0))[None, :]
    limit = MAX_GAIN_DB / 20.0 * np.log(10.0)
    out = torch.istft((spec * torch.exp(gain.clamp(-limit, limit))).T, N_FFT, HOP, window=window, length=wav.numel())
    return out.numpy()
