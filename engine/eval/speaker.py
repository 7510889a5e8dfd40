"""Speaker similarity: cosine between speaker embeddings of generated speech and its voice prompt.

The paper uses WavLM-base-plus-sv (``microsoft/wavlm-base-plus-sv``) for voice conversion.
``load_speaker_encoder("auto")`` uses it when it is in the local Hugging Face cache (or a folder
is given), and otherwise the ``resemblyzer`` GE2E encoder, whose weights ship inside its wheel.
Scores from the two encoders are on different scales: compare systems with the same encoder
(the report names it).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from engine.audio import SAMPLE_RATE
from engine.errors import ModelUnavailableError
from engine.hub import cached_snapshot

log = logging.getLogger(__name__)

WAVLM_REPO = "microsoft/wavlm-base-plus-sv"


class SpeakerEncoder(Protocol):
    name: str

    def embed(self, wav: np.ndarray) -> np.ndarray:
        """16 kHz mono float32 -> L2-normalised speaker embedding [D]."""
        ...


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom > 0 else 0.0


def _check(wav: np.ndarray) -> np.ndarray:
    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    if wav.size < SAMPLE_RATE // 4:
        raise ValueError(f"speaker similarity needs at least 0.25 s of audio, got {wav.size / SAMPLE_RATE:.2f} s")
    return wav


class ResemblyzerEncoder:
    """GE2E d-vector (256-d) from the ``resemblyzer`` wheel; silence is trimmed before embedding."""

    name = "resemblyzer-ge2e"

    def __init__(self, device: str = "cpu"):
        try:
            from resemblyzer import VoiceEncoder
        except ImportError as exc:
            raise ModelUnavailableError(
                "resemblyzer is not installed: `.venv/bin/pip install --no-deps resemblyzer==0.1.4` "
                "(with --no-deps: it declares the broken original webrtcvad; webrtcvad-wheels provides it)"
            ) from exc
        self.encoder = VoiceEncoder(device=device, verbose=False)

    def embed(self, wav: np.ndarray) -> np.ndarray:
        from resemblyzer import preprocess_wav

        wav = _check(wav)
        trimmed = preprocess_wav(wav, source_sr=SAMPLE_RATE)
        if trimmed.size < SAMPLE_RATE // 4:  # all "silence" to its VAD: embed the raw clip instead
            trimmed = wav
        return self.encoder.embed_utterance(trimmed)


class WavLMEncoder:
    """x-vector head of WavLM-base-plus-sv (512-d), as the paper's voice-conversion table uses."""

    name = "wavlm-base-plus-sv"

    def __init__(self, path: str | Path, device: str = "cpu"):
        import torch
        from transformers import AutoFeatureExtractor, WavLMForXVector

        self.torch = torch
        self.device = torch.device(device)
        self.extractor = AutoFeatureExtractor.from_pretrained(str(path))
        self.model = WavLMForXVector.from_pretrained(str(path)).to(self.device).eval()

    def embed(self, wav: np.ndarray) -> np.ndarray:
        wav = _check(wav)
        inputs = self.extractor(wav, sampling_rate=SAMPLE_RATE, return_tensors="pt", padding=True)
        with self.torch.inference_mode():
            emb = self.model(**{k: v.to(self.device) for k, v in inputs.items()}).embeddings[0]
        emb = self.torch.nn.functional.normalize(emb, dim=-1)
        return emb.float().cpu().numpy()


def _wavlm_path(spec: str) -> Path | None:
    if spec not in ("auto", "wavlm"):
        path = Path(spec).expanduser()
        return path if (path / "config.json").is_file() else None
    return cached_snapshot(WAVLM_REPO)


def load_speaker_encoder(spec: str | None = "auto", device: str = "cpu") -> SpeakerEncoder:
    """``auto`` | ``wavlm`` | ``resemblyzer`` | a local WavLM-sv folder (``SPEECHGPT_SPEAKER_MODEL`` for auto)."""
    spec = spec or "auto"
    if spec == "auto" and os.environ.get("SPEECHGPT_SPEAKER_MODEL"):
        spec = os.environ["SPEECHGPT_SPEAKER_MODEL"]
    if spec == "resemblyzer":
        return ResemblyzerEncoder(device)
    path = _wavlm_path(spec)
    if path is not None:
        return WavLMEncoder(path, device)
    if spec != "auto":
        raise ModelUnavailableError(
            f"WavLM speaker model not found ({spec}). On a machine with internet run "
            f"`huggingface-cli download {WAVLM_REPO}`, or pass --speaker resemblyzer."
        )
    log.info("%s is not cached; scoring speaker similarity with resemblyzer", WAVLM_REPO)
    return ResemblyzerEncoder(device)


def describe_speaker_encoder(spec: str = "auto") -> str:
    """Which encoder ``load_speaker_encoder(spec)`` would use, without loading it."""
    import importlib.util

    if spec != "resemblyzer":
        path = _wavlm_path(spec)
        if path is not None:
            return f"{WavLMEncoder.name} ({path}), as in the paper"
    if importlib.util.find_spec("resemblyzer") is not None:
        return f"{ResemblyzerEncoder.name} (offline fallback; {WAVLM_REPO} is not cached)"
    return "none: install the eval extras and `pip install --no-deps resemblyzer==0.1.4`"


def speaker_similarity(encoder: SpeakerEncoder, a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of the two clips' speaker embeddings (1 = same direction)."""
    return cosine(encoder.embed(a), encoder.embed(b))
