"""Semantic teacher features for codec training: Whisper tiny.en's encoder at 50 Hz x 384.

The demo codec distils its RVQ-1 towards these features (SpeechTokenizer's recipe, with Whisper
in place of HuBERT; codec v3 quantises a projection of them as its RVQ-1). The encoder itself is
``engine.melcodec.whisper.WhisperEncoder``.

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
from typing import Callable, Iterable

import numpy as np

from engine.melcodec.whisper import DIM, NAME, WhisperEncoder

log = logging.getLogger(__name__)


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
    teacher: WhisperEncoder | None = None,
    part_size: int = 500,
    batch_size: int = 8,
    progress: bool = True,
    name: str = NAME,
    dim: int = DIM,
    desc: str = "teacher features",
) -> TeacherCache:
    """Compute and cache teacher features for ``(id, load_wav)`` pairs; parts already written are kept.
    The same cache holds any per-frame features: ``teacher`` is then any object whose
    ``encode_batch(list of what load() returns)`` gives one [T, dim] array per item, and ``name`` /
    ``dim`` are recorded in each part (engine.train.decoder_inputs stores a flow model's outputs so)."""
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
        teacher = teacher or WhisperEncoder()
    bar = tqdm(total=sum(len(p) for _, p in todo), desc=desc, disable=not progress, unit="utt")
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
        meta = {"teacher": name, "dim": dim, "ids": [u for u, _ in part], "frames": [int(f.shape[0]) for f in feats]}
        tmp_meta = folder / f".part-{k:05d}.json.tmp"
        tmp_meta.write_text(json.dumps(meta))
        os.replace(tmp_meta, folder / f"part-{k:05d}.json")  # written last: marks the part complete
    bar.close()
    return TeacherCache.open(folder)
