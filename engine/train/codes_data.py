"""On-disk corpus of extracted codec codes, shared by every training pipeline.

A folder holds ``meta.json`` (codec name, counts), ``index.jsonl`` (one line per utterance:
``{"id", "shard", "key", "frames", "text", "speaker", "source"}``) and ``shard-NNNNN.npz`` files of
int16 arrays [8, T]. Shards are written atomically and the index is appended after each shard,
so an interrupted extraction resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

log = logging.getLogger(__name__)

INDEX = "index.jsonl"
META = "meta.json"


@dataclass
class Entry:
    """One utterance of the index: its codes are ``np.load(folder / shard)[key]`` (int16 [8, frames])."""

    id: str
    shard: str
    key: str
    frames: int
    text: str | None = None
    speaker: str | None = None
    source: str | None = None


def read_index(folder: str | Path) -> list[Entry]:
    """All entries of ``folder/index.jsonl`` ([] when there is none). A truncated last line (an
    extraction killed while appending) is ignored; a damaged line elsewhere is an error."""
    path = Path(folder) / INDEX
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").split("\n")
    entries = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entries.append(Entry(**json.loads(line)))
        except (json.JSONDecodeError, TypeError) as exc:
            if n == len(lines):  # no newline after it: the write was interrupted
                log.warning("ignoring the truncated last line of %s", path)
                break
            raise ValueError(f"{path} line {n} is damaged ({exc}); delete that line and rerun the extraction to redo it") from exc
    return entries


def read_meta(folder: str | Path) -> dict:
    """``folder/meta.json`` ({} when there is none): codec name, utterance count, format."""
    path = Path(folder) / META
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


class ShardWriter:
    """Collects utterances and writes them in shards; resumable (``done`` holds the finished ids).

    Each shard is written to a temporary name and renamed, then its entries are appended to the
    index, so the index only ever names complete shards. ``codec_name`` is recorded in meta.json
    (None: keep the folder's, if any); writing codes of another codec into a folder is refused.
    """

    def __init__(self, folder: str | Path, codec_name: str | None = None, shard_size: int = 1000):
        if shard_size < 1:
            raise ValueError(f"shard_size must be at least 1, got {shard_size}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        meta = read_meta(self.folder)
        if meta and codec_name is not None and meta.get("codec") not in (None, codec_name):
            raise ValueError(f"{self.folder} holds codes of the {meta.get('codec')!r} codec, not {codec_name!r}; use another --out")
        self.codec_name = codec_name if codec_name is not None else meta.get("codec")
        self.shard_size = shard_size
        self._repair_index()
        existing = read_index(self.folder)
        self.done = {e.id for e in existing}
        self._next_shard = 1 + max((int(Path(e.shard).stem.split("-")[-1]) for e in existing), default=-1)
        self._pending: list[tuple[Entry, np.ndarray]] = []
        self.count = len(existing)  # utterances in the index
        self._write_meta()

    def _repair_index(self) -> None:
        """Cut a partial last line (left by a killed process) so that appends start on a new line."""
        path = self.folder / INDEX
        if not path.is_file():
            return
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    def _write_meta(self) -> None:
        tmp = self.folder / f".{META}.tmp"
        tmp.write_text(json.dumps({"codec": self.codec_name, "utterances": self.count, "format": "int16 [8, T] codes at 50 Hz"}, indent=2))
        os.replace(tmp, self.folder / META)

    def add(self, uid: str, codes: np.ndarray | Tensor, text: str | None = None, speaker: str | None = None, source: str | None = None) -> None:
        """Queue one utterance's codes [8, T]; a full shard is written at once."""
        arr = np.asarray(codes.cpu() if isinstance(codes, Tensor) else codes)
        if arr.ndim != 2 or arr.shape[0] != 8 or arr.shape[1] < 1:
            raise ValueError(f"codes must be [8, T] with T >= 1, got {arr.shape}")
        if arr.min() < 0 or arr.max() > np.iinfo(np.int16).max:
            raise ValueError(f"codes of {uid!r} are outside the int16 range the format stores: [{arr.min()}, {arr.max()}]")
        arr = arr.astype(np.int16)
        if uid in self.done:
            raise ValueError(f"utterance id {uid!r} is already in {self.folder}; ids must be unique")
        self._pending.append((Entry(uid, "", f"u{len(self._pending)}", int(arr.shape[1]), text, speaker, source), arr))
        self.done.add(uid)
        if len(self._pending) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        """Write the queued utterances as one shard (atomic rename), then append them to the index."""
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
        self.count += len(self._pending)
        self._pending = []
        self._write_meta()

    def close(self) -> None:
        """Write what is pending (a last, smaller shard)."""
        self.flush()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class CodesDataset(torch.utils.data.Dataset):
    """Random access to the utterances of a codes folder: ``dataset[i]`` -> codes [8, T] (int64).

    Shards open lazily and each item reads only its own array; the ``cache_shards`` most recently
    used shards stay open (per process: DataLoader workers open their own). Utterances longer than ``max_frames`` are cropped: at a
    random offset (``random_crop``, training) or from the start (validation). The offset is a
    function of (``seed``, epoch, index) alone, so it does not depend on workers, prefetching or
    where a resumed run restarts.
    """

    def __init__(
        self,
        folder: str | Path,
        ids: list[str] | None = None,
        min_frames: int = 1,
        max_frames: int | None = None,
        random_crop: bool = True,
        cache_shards: int = 64,
        seed: int = 0,
    ):
        self.folder = Path(folder)
        entries = read_index(self.folder)
        if not entries:
            raise FileNotFoundError(f"no {INDEX} with utterances in {self.folder}; run `python -m engine extract` first")
        if ids is not None:
            wanted = set(ids)
            entries = [e for e in entries if e.id in wanted]
        self.entries = [e for e in entries if e.frames >= min_frames]
        self.max_frames = max_frames
        self.random_crop = random_crop
        self.seed = seed
        self.epoch = 0
        self.cache_shards = max(cache_shards, 1)
        self.codec = read_meta(self.folder).get("codec")
        self._cache: OrderedDict[str, np.lib.npyio.NpzFile] = OrderedDict()
        self._cache_pid = os.getpid()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()  # workers open their own shards
        return state

    def _shard(self, shard: str) -> np.lib.npyio.NpzFile:
        """An open shard (reading one key reads only that array, not the whole shard)."""
        if self._cache_pid != os.getpid():  # a forked DataLoader worker: never share file positions
            self._cache, self._cache_pid = OrderedDict(), os.getpid()
        npz = self._cache.get(shard)
        if npz is None:
            path = self.folder / shard
            if not path.is_file():
                raise FileNotFoundError(f"{path} is named in {self.folder / INDEX} but missing; rerun the extraction into a fresh folder")
            npz = self._cache[shard] = np.load(path)
            while len(self._cache) > self.cache_shards:
                self._cache.popitem(last=False)[1].close()
        else:
            self._cache.move_to_end(shard)
        return npz

    def __len__(self) -> int:
        return len(self.entries)

    def set_epoch(self, epoch: int) -> None:
        """New crop offsets for the new epoch."""
        self.epoch = epoch

    def lengths(self) -> list[int]:
        """Frames per item after cropping (what the batch sampler budgets with)."""
        return [min(e.frames, self.max_frames or e.frames) for e in self.entries]

    def __getitem__(self, i: int) -> Tensor:
        e = self.entries[i]
        codes = torch.from_numpy(self._shard(e.shard)[e.key].astype(np.int64))  # [8, T]
        if self.max_frames and codes.shape[1] > self.max_frames:
            rng = random.Random(f"{self.seed}-{self.epoch}-{i}")
            start = rng.randint(0, codes.shape[1] - self.max_frames) if self.random_crop else 0
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
    """Batches of similar lengths whose padded size (longest x count) stays within ``max_frames``;
    an item longer than the budget gets a batch of its own.

    Items are grouped by ``length // bucket_width``, shuffled within and across buckets with
    ``seed + epoch``: every process computes the same batches, so accelerate's ``BatchSamplerShard``
    can deal them out (it handles the varying batch sizes: no ``batch_size`` attribute here).
    """

    def __init__(self, lengths: list[int], max_frames: int, seed: int = 0, shuffle: bool = True, bucket_width: int = 50):
        if max_frames < 1 or bucket_width < 1:
            raise ValueError(f"max_frames and bucket_width must be positive, got {max_frames} and {bucket_width}")
        self.lengths = list(lengths)
        self.max_frames = max_frames
        self.seed = seed
        self.shuffle = shuffle
        self.bucket_width = bucket_width
        self.epoch = 0
        self._cached: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        if self._cached is not None and self._cached[0] == self.epoch:
            return self._cached[1]
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
        self._cached = (self.epoch, batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())


def collate_codes(items: list[Tensor]) -> dict[str, Tensor]:
    """items: codes [8, T_i] -> codes [B, 8, T] (zero-padded), lengths [B], mask [B, T] (True = valid)."""
    lengths = torch.tensor([x.shape[1] for x in items])
    codes = torch.zeros(len(items), items[0].shape[0], int(lengths.max()), dtype=torch.long)
    for i, x in enumerate(items):
        codes[i, :, : x.shape[1]] = x
    mask = torch.arange(codes.shape[2])[None] < lengths[:, None]
    return {"codes": codes, "lengths": lengths, "mask": mask}
