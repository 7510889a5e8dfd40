"""Audio input: anything a user or a browser hands us -> validated 16 kHz mono float32.

Accepted sources: a file path (wav, flac, ogg, mp3 - whatever the system libsndfile reads),
raw file bytes, a ``(sample_rate, ndarray)`` pair as Gradio's microphone delivers it (int16 or
float, mono or stereo, channels last), or a 1-D float array already at 16 kHz.
Nothing is ever written over the user's files.

Files and bytes are checked from their header (``sf.info``) before anything is decoded: a clip
with no channels, an absurd sample rate, or longer than ``max_seconds`` is refused without its
samples being read, so a huge upload costs no memory. An ``UploadedFile`` (a file the web server
stored) is size-checked first and named "the uploaded audio" in every message, never by its path.

``AudioInput`` (no ``str``) is what the engine's tasks take as audio: a ``pathlib.Path`` names a
file and only trusted callers (the CLI, manifests) build one; text is never taken for a path.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

from engine.errors import EngineError

SAMPLE_RATE = 16000
MIN_SAMPLE_RATE = 4000
MAX_SAMPLE_RATE = 384000
SILENCE_PEAK = 1e-4  # peak amplitude under which a clip counts as silent (-80 dBFS)
MAX_CHANNELS = 8


@dataclass(frozen=True)
class UploadedFile:
    """A file a web server stored for a user (e.g. Gradio's upload folder). Read like a path, but
    refused when larger than ``max_bytes`` (before reading) and never named by its path."""

    path: Path
    max_bytes: int | None = None


AudioSource = Union[str, os.PathLike, UploadedFile, bytes, tuple, np.ndarray]  # what load_audio reads (str = a path)
AudioInput = Union[Path, UploadedFile, bytes, bytearray, tuple, np.ndarray]  # audio for the engine's tasks: never a str


class AudioError(EngineError, ValueError):
    """Bad audio input; the message says what was wrong and what to do."""


def resample(wav: np.ndarray, from_sr: int, to_sr: int = SAMPLE_RATE) -> np.ndarray:
    """High-quality resampling (soxr) of a 1-D or [S, C] float32 array."""
    if from_sr == to_sr:
        return wav
    import soxr

    return soxr.resample(wav, from_sr, to_sr, quality="HQ").astype(np.float32, copy=False)


def _to_float(data: np.ndarray) -> np.ndarray:
    """Integer PCM -> float32 in [-1, 1]; floats pass through as float32."""
    if data.dtype.kind == "i":
        scale = float(2 ** (8 * data.dtype.itemsize - 1))
        return (data.astype(np.float32) / scale).astype(np.float32)
    if data.dtype.kind == "u":
        half = float(2 ** (8 * data.dtype.itemsize - 1))
        return ((data.astype(np.float32) - half) / half).astype(np.float32)
    if data.dtype.kind == "f":
        return data.astype(np.float32, copy=False)
    if data.dtype.kind == "b":
        raise AudioError("got a boolean array, not audio samples")
    raise AudioError(f"unsupported sample type {data.dtype}; give int16/int32 PCM or float samples")


def _to_mono(data: np.ndarray) -> np.ndarray:
    """[S] or [S, C] (or [C, S] with few channels) -> [S] by averaging channels."""
    if data.ndim == 1:
        return data
    if data.ndim != 2:
        raise AudioError(f"audio must be 1-D or [samples, channels], got shape {data.shape}")
    if data.shape[1] > 8 and data.shape[0] <= 8:  # channels first
        data = data.T
    return data.mean(axis=1).astype(np.float32)


def _read_file(source: Union[str, os.PathLike, UploadedFile, bytes], max_seconds: float | None, min_seconds: float) -> tuple[int, np.ndarray]:
    """Check the header (channels, rate, length) and only then decode."""
    import soundfile as sf

    if isinstance(source, UploadedFile):
        label = "the uploaded audio"
        try:
            size = Path(source.path).stat().st_size
        except OSError:
            raise AudioError("the uploaded audio is no longer on the server; upload it again") from None
        if source.max_bytes is not None and size > source.max_bytes:
            raise AudioError(f"the uploaded file is {size / 2**20:.1f} MB; the limit is {source.max_bytes / 2**20:.1f} MB (server.max_upload_mb)")
        if size == 0:
            raise AudioError("the uploaded audio is empty (0 bytes); record or upload the clip again")
        handle: object = str(source.path)
    elif isinstance(source, (bytes, bytearray)):
        if len(source) == 0:
            raise AudioError("the audio data is empty (0 bytes); record or upload the clip again")
        handle: object = io.BytesIO(source)
        label = "the uploaded audio"
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise AudioError(f"audio file not found: {path}")
        if path.is_dir():
            raise AudioError(f"{path} is a folder, not an audio file")
        if path.stat().st_size == 0:
            raise AudioError(f"audio file {path} is empty (0 bytes)")
        handle = str(path)
        label = str(path)
    hint = "Use a WAV, FLAC, OGG or MP3 file (convert others with e.g. `ffmpeg -i in.m4a out.wav`)"
    try:
        info = sf.info(handle)
    except Exception as exc:  # libsndfile raises several types
        raise AudioError(f"could not read {label}: it is not audio in a format we read ({_reason(exc)}). {hint}") from exc
    if isinstance(handle, io.BytesIO):
        handle.seek(0)
    if not 1 <= info.channels <= MAX_CHANNELS:
        raise AudioError(f"{label} has {info.channels} audio channels; 1 to {MAX_CHANNELS} are accepted (is the file damaged?). {hint}")
    sr = int(info.samplerate)
    if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        raise AudioError(f"sample rate {sr} Hz is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz; is the file really audio?")
    frames = int(info.frames)
    if 0 < frames < (1 << 62):  # libsndfile reports a huge count when the length is unknown (streams)
        _check_length(frames / sr, max_seconds, min_seconds)
    try:
        if frames >= (1 << 62) and max_seconds is not None:  # unknown length: never decode past the limit
            with sf.SoundFile(handle) as f:
                data = f.read(int(max_seconds * sr) + 1, dtype="float32", always_2d=False)
        else:
            data, sr = sf.read(handle, dtype="float32", always_2d=False)
    except Exception as exc:
        raise AudioError(f"could not read {label}: the audio data is damaged ({_reason(exc)}). {hint}") from exc
    return int(sr), np.asarray(data)


def _reason(exc: BaseException) -> str:
    """libsndfile's message without any file name in it."""
    text = str(exc)
    if "Error opening" in text and ":" in text:
        text = text.rsplit(":", 1)[-1]
    return text.strip() or type(exc).__name__


def _check_length(duration: float, max_seconds: float | None, min_seconds: float) -> None:
    if max_seconds is not None and duration > max_seconds:
        raise AudioError(f"the audio is {duration:.1f} s long; the limit is {max_seconds:.0f} s. Trim it or raise pipeline.max_input_seconds")
    if duration < min_seconds:
        raise AudioError(f"the audio is only {duration * 1000:.0f} ms long; record or upload at least {min_seconds:g} s")


def load_audio(
    source: AudioSource,
    *,
    sample_rate: int | None = None,
    max_seconds: float | None = None,
    min_seconds: float = 0.0,
    allow_silence: bool = False,
) -> np.ndarray:
    """Load and validate audio; returns a 1-D 16 kHz mono float32 array.

    ``sample_rate`` gives the rate of a bare ndarray (default 16 kHz). Raises AudioError for
    empty/corrupt files, zero-length or all-silent audio, NaN/Inf samples, absurd sample
    rates, no channels, or audio longer than ``max_seconds`` / shorter than ``min_seconds``
    (for files and bytes both are checked from the header, before decoding).
    """
    if isinstance(source, tuple):
        if len(source) != 2:
            raise AudioError("expected a (sample_rate, samples) pair")
        sr, data = source
        if isinstance(data, (int, float)) and isinstance(sr, np.ndarray):  # (samples, rate) order
            sr, data = data, sr
        data = np.asarray(data)
    elif isinstance(source, np.ndarray):
        sr, data = (sample_rate or SAMPLE_RATE), source
    elif isinstance(source, (str, os.PathLike, UploadedFile, bytes, bytearray)):
        sr, data = _read_file(source, max_seconds, min_seconds)
    else:
        raise AudioError(f"unsupported audio input of type {type(source).__name__}; give a file path, bytes or (rate, samples)")

    try:
        sr = int(sr)
    except (TypeError, ValueError) as exc:
        raise AudioError(f"sample rate {sr!r} is not a number") from exc
    if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        raise AudioError(f"sample rate {sr} Hz is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz; is the file really audio?")
    data = np.asarray(data)
    if data.ndim == 2 and 0 in data.shape:
        raise AudioError("the audio has no channels or no samples; record or upload the clip again")
    wav = _to_mono(_to_float(data))
    if wav.size == 0:
        raise AudioError("the audio has no samples (zero length); record or upload a longer clip")
    if not np.all(np.isfinite(wav)):
        raise AudioError("the audio contains NaN or infinite samples; the file is corrupt")
    _check_length(wav.size / sr, max_seconds, min_seconds)
    if not allow_silence and float(np.max(np.abs(wav))) < SILENCE_PEAK:
        raise AudioError("the audio is silent; check the microphone (is it muted?) or the file")
    wav = resample(np.ascontiguousarray(wav, dtype=np.float32), sr, SAMPLE_RATE)
    peak = float(np.max(np.abs(wav)))
    if peak > 1.0:  # float input outside [-1, 1]: scale down rather than clip
        wav = wav / peak
    return np.ascontiguousarray(wav, dtype=np.float32)


def save_wav(path: str | os.PathLike, wav: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write 16-bit PCM WAV atomically (temp file + rename). Returns the path."""
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    data = np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0)
    sf.write(str(tmp), data, sample_rate, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)
    return path


def wav_bytes(wav: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Encode as 16-bit PCM WAV bytes (downloads, HTTP)."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()
