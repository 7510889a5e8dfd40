"""On-disk corpus of extracted codec codes, shared by every training pipeline.

A folder holds ``meta.json`` (codec name, counts), ``index.jsonl`` (one line per utterance:
``{"id", "shard", "key", "frames", "text", "speaker", "source"}``) and ``shard-NNNNN.npz`` files of
int16 arrays [8, T]. Shards are written atomically and the index is appended after each shard,
so an interrupted extraction resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

INDEX = "index.jsonl"
META = "meta.json"


@dataclass
class Entry:
    id: str
    shard: str
    key: str
    frames: int
    text: str | None = None
    speaker: str | None = None
    source: str | None = None


def read_index(folder: str | Path) -> list[Entry]:
    path = Path(folder) / INDEX
    if not path.is_file():
        return []
    entries = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                entries.append(Entry(**json.loads(line)))
    return entries


def read_meta(folder: str | Path) -> dict:
    path = Path(folder) / META
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


class ShardWriter:
    """Collects utterances and writes them in shards; resumable (``done`` holds finished ids)."""

    def __init__(self, folder: str | Path, codec_name: str, shard_size: int = 1000):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        meta = read_meta(self.folder)
        if meta and meta.get("codec") != codec_name:
            raise ValueError(f"{self.folder} holds codes of the {meta.get('codec')!r} codec, not {codec_name!r}; use another --out")
        self.codec_name = codec_name
        self.shard_size = shard_size
        existing = read_index(self.folder)
        self.done = {e.id for e in existing}
        self._next_shard = 1 + max((int(e.shard[6:11]) for e in existing), default=-1)
        self._pending: list[tuple[Entry, np.ndarray]] = []
        self._write_meta(len(existing))

    def _write_meta(self, count: int) -> None:
        tmp = self.folder / f".{META}.tmp"
        tmp.write_text(json.dumps({"codec": self.codec_name, "utterances": count, "format": "int16 [8, T] codes at 50 Hz"}, indent=2))
        os.replace(tmp, self.folder / META)

    def add(self, uid: str, codes: np.ndarray | Tensor, text: str | None = None, speaker: str | None = None, source: str | None = None) -> None:
        arr = np.asarray(codes.cpu() if isinstance(codes, Tensor) else codes).astype(np.int16)
        if arr.ndim != 2 or arr.shape[0] != 8:
            raise ValueError(f"codes must be [8, T], got {arr.shape}")
        self._pending.append((Entry(uid, "", f"u{len(self._pending)}", int(arr.shape[1]), text, speaker, source), arr))
        self.done.add(uid)
        if len(self._pending) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        name = f"shard-{self._next_shard:05d}.npz"
        tmp = self.folder / f".{name}.tmp.npz"
        np.savez(tmp, **{e.key: arr for e, arr in self._pending})
        os.replace(tmp, self.folder / name)
        with open(self.folder / INDEX, "a", encoding="utf-8") as f:
            for e, _ in self._pending:
                e.shard = name
                f.write(json.dumps(asdict(e), ensure_ascii=False) + "\n")
        self._next_shard += 1
        self._pending = []
        self._write_meta(len(read_index(self.folder)))

    def close(self) -> None:
        self.flush()


class CodesDataset(torch.utils.data.Dataset):
    """Random access to the utterances of a codes folder; shards load lazily and are cached."""

    def __init__(self, folder: str | Path, ids: list[str] | None = None, min_frames: int = 1, max_frames: int | None = None):
        self.folder = Path(folder)
        entries = read_index(self.folder)
        if not entries:
            raise FileNotFoundError(f"no {INDEX} with utterances in {self.folder}; run `python -m engine extract` first")
        if ids is not None:
            wanted = set(ids)
            entries = [e for e in entries if e.id in wanted]
        self.entries = [e for e in entries if e.frames >= min_frames]
        self.max_frames = max_frames
        self.codec = read_meta(self.folder).get("codec")
        self._load = lru_cache(maxsize=4)(self._load_shard)

    def _load_shard(self, shard: str) -> dict[str, np.ndarray]:
        with np.load(self.folder / shard) as data:
            return {k: data[k] for k in data.files}

    def __len__(self) -> int:
        return len(self.entries)

    def lengths(self) -> list[int]:
        return [min(e.frames, self.max_frames or e.frames) for e in self.entries]

    def __getitem__(self, i: int) -> Tensor:
        e = self.entries[i]
        codes = torch.from_numpy(self._load(e.shard)[e.key].astype(np.int64))  # [8, T]
        if self.max_frames and codes.shape[1] > self.max_frames:
            start = random.randint(0, codes.shape[1] - self.max_frames)
            codes = codes[:, start : start + self.max_frames]
        return codes


def split_ids(folder: str | Path, valid_fraction: float = 0.02, seed: int = 0, min_valid: int = 1) -> tuple[list[str], list[str]]:
    """Deterministic train/validation split of the utterance ids."""
    ids = sorted(e.id for e in read_index(folder))
    rng = random.Random(seed)
    rng.shuffle(ids)
    if valid_fraction <= 0:
        return ids, []
    n_valid = min(max(min_valid, int(len(ids) * valid_fraction)), max(len(ids) - 1, 0))
    return ids[n_valid:], ids[:n_valid]


class LengthBucketSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of similar lengths whose padded size stays under ``max_frames`` in total; shuffled
    per epoch with ``seed + epoch``."""

    def __init__(self, lengths: list[int], max_frames: int, seed: int = 0, shuffle: bool = True, bucket_width: int = 50):
        self.lengths = lengths
        self.max_frames = max_frames
        self.seed = seed
        self.shuffle = shuffle
        self.bucket_width = bucket_width
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        rng = random.Random(self.seed + self.epoch)
        order = list(range(len(self.lengths)))
        if self.shuffle:
            rng.shuffle(order)
        order.sort(key=lambda i: self.lengths[i] // self.bucket_width)  # stable: shuffled within buckets
        batches, current, longest = [], [], 0
        for i in order:
            longest_new = max(longest, self.lengths[i])
            if current and longest_new * (len(current) + 1) > self.max_frames:
                batches.append(current)
                current, longest_new = [], self.lengths[i]
            current.append(i)
            longest = longest_new
        if current:
            batches.append(current)
        if self.shuffle:
            rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())


def collate_codes(items: list[Tensor]) -> dict[str, Tensor]:
    """-> codes [B, 8, T] (zero-padded), lengths [B], mask [B, T] (True = valid)."""
    lengths = torch.tensor([x.shape[1] for x in items])
    codes = torch.zeros(len(items), items[0].shape[0], int(lengths.max()), dtype=torch.long)
    for i, x in enumerate(items):
        codes[i, :, : x.shape[1]] = x
    mask = torch.arange(codes.shape[2])[None] < lengths[:, None]
    return {"codes": codes, "lengths": lengths, "mask": mask}
