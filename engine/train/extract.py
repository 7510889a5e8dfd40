"""Encode a speech corpus into sharded RVQ codes (engine.train.codes_data format).

Sources: a folder scanned recursively for audio (LibriSpeech ``*.trans.txt`` and Multilingual
LibriSpeech ``transcripts.txt`` transcripts are picked up; the speaker is the first folder under
the root), a text list (``path`` or ``path<TAB>transcript`` per line) or JSONL (``{"path",
"text"?, "speaker"?, "id"?}``). Files are sorted by duration and encoded in batches of at most
``batch_frames`` padded frames (on the codec's device: the GPU when there is one), with audio
decoded ahead in threads. Finished ids are skipped on a rerun; files that cannot be used are
listed with the reason in ``failed.tsv`` (rewritten by every run, so it lists what still fails).

A demo corpus (``python -m engine demo corpus``) is read from its ``manifest.jsonl`` with
``list_corpus_items``: one split only, and for ``train`` every held-out voice and held-out sentence
is kept out, whatever a row's own ``split`` says.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from engine.audio import AudioError, load_audio
from engine.codec import Codec
from engine.jsonl import read_jsonl
from engine.train.codes_data import ShardWriter

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".opus", ".mp3"}
FAILED = "failed.tsv"


@dataclass
class Item:
    id: str
    path: Path
    text: str | None = None
    speaker: str | None = None


def _item_id(path: Path, root: Path | None) -> str:
    rel = path.relative_to(root) if root is not None and path.is_relative_to(root) else Path(path.name)
    return str(rel.with_suffix("")).replace("/", "__")


def folder_transcripts(root: Path) -> dict[str, str]:
    """utterance id (file stem) -> transcript from LibriSpeech ``*.trans.txt`` (``ID TEXT``) and
    MLS ``transcripts.txt`` (``ID<TAB>TEXT``, in the root or its parent)."""
    texts: dict[str, str] = {}
    files = list(root.rglob("*.trans.txt")) + [p for p in (root / "transcripts.txt", root.parent / "transcripts.txt") if p.is_file()]
    for path in files:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            uid, _, text = line.partition("\t") if "\t" in line else line.partition(" ")
            if uid.strip() and text.strip():
                texts[uid.strip()] = text.strip()
    return texts


def list_items(source: str | Path) -> list[Item]:
    """The items of a folder, a text list or a JSONL list (relative paths: relative to the list's folder)."""
    source = Path(source)
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
        texts = folder_transcripts(source)
        items = []
        for p in files:
            rel = p.relative_to(source)
            speaker = rel.parts[0] if len(rel.parts) > 1 else None  # LibriSpeech: speaker/chapter/file
            items.append(Item(_item_id(p, source), p, texts.get(p.stem), speaker))
        return items
    if not source.is_file():
        raise FileNotFoundError(f"{source} is neither a folder nor a file list")
    items = []
    base = source.parent
    for n, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        if source.suffix == ".jsonl":
            try:
                rec = json.loads(line)
                path = Path(rec["path"])
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"{source} line {n}: expected a JSON object with a \"path\" ({exc})") from exc
            path = path if path.is_absolute() else base / path
            items.append(Item(str(rec.get("id") or _item_id(path, base)), path, rec.get("text"), rec.get("speaker")))
        else:
            parts = line.split("\t")
            path = Path(parts[0].strip())
            path = path if path.is_absolute() else base / path
            text = parts[1].strip() if len(parts) > 1 and parts[1].strip() else None
            items.append(Item(_item_id(path, base), path, text))
    return items


CORPUS_MANIFEST = "manifest.jsonl"
CORPUS_FIELDS = ("id", "path", "voice", "text", "sentence_id", "split", "heldout_voice", "heldout_sentence")
SPLITS = ("train", "test", "all")


def corpus_manifest_path(corpus: str | Path) -> Path:
    """``corpus`` itself when it is a file, else ``corpus/manifest.jsonl``."""
    corpus = Path(corpus)
    path = corpus / CORPUS_MANIFEST if corpus.is_dir() else corpus
    if not path.is_file():
        raise FileNotFoundError(f"no demo-corpus manifest at {path}; build the corpus with `python -m engine demo corpus --out DIR`")
    return path


def read_corpus_rows(corpus: str | Path) -> list[dict]:
    """The rows of a demo corpus's ``manifest.jsonl`` (checked for the fields the split needs)."""
    path = corpus_manifest_path(corpus)
    rows = []
    for n, row in read_jsonl(path):
        missing = [k for k in CORPUS_FIELDS if k not in row]
        if missing:
            raise ValueError(f"{path} line {n}: missing field(s) {missing}; is this a `python -m engine demo corpus` manifest?")
        rows.append(row)
    return rows


def select_split(rows: list[dict], split: str = "train") -> tuple[list[dict], int]:
    """The rows of ``split`` (train | test | all) and how many rows of that split were dropped.

    ``train`` is defended in depth: a row is kept only when its split is ``train`` *and* neither its
    voice nor its sentence (by id or by spoken text) is held out anywhere in the manifest, so a
    mislabelled row can never bring a held-out voice or sentence into training."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use {', '.join(SPLITS)}")
    if split == "all":
        return list(rows), 0
    if split == "test":
        return [r for r in rows if r["split"] == "test"], 0
    voices = {r["voice"] for r in rows if r["heldout_voice"]}
    sentences = {r["sentence_id"] for r in rows if r["heldout_sentence"]}
    texts = {" ".join(str(r["text"]).lower().split()) for r in rows if r["heldout_sentence"]}
    labelled = [r for r in rows if r["split"] == "train"]
    kept = [r for r in labelled if not r["heldout_voice"] and not r["heldout_sentence"] and r["voice"] not in voices
            and r["sentence_id"] not in sentences and " ".join(str(r["text"]).lower().split()) not in texts]
    return kept, len(labelled) - len(kept)


def list_corpus_items(corpus: str | Path, split: str = "train") -> list[Item]:
    """The items of one split of a demo corpus (folder or its manifest.jsonl); speaker = the row's voice."""
    path = corpus_manifest_path(corpus)
    rows, dropped = select_split(read_corpus_rows(path), split)
    if dropped:
        log.warning("%d %s rows of %s name a held-out voice or sentence; they are left out", dropped, split, path)
    base = path.parent
    return [Item(str(r["id"]), Path(r["path"]) if Path(r["path"]).is_absolute() else base / r["path"], r.get("text"), r.get("voice"))
            for r in rows]


def _duration(item: Item) -> float:
    import soundfile as sf

    try:
        return float(sf.info(str(item.path)).duration)
    except Exception:  # unreadable: sorted first, reported when loaded
        return 0.0


def _load_ahead(items: list[Item], pool: ThreadPoolExecutor | None, max_seconds: float | None, ahead: int) -> Iterator[tuple[Item, np.ndarray | Exception]]:
    """(item, 16 kHz waveform or the AudioError) in order, decoding up to ``ahead`` files in advance."""

    def load(item: Item) -> np.ndarray | Exception:
        try:
            return load_audio(item.path, max_seconds=max_seconds)
        except AudioError as exc:
            return exc

    if pool is None:
        for item in items:
            yield item, load(item)
        return
    queue: deque = deque()
    it = iter(items)
    for item in it:
        queue.append((item, pool.submit(load, item)))
        if len(queue) >= ahead:
            first, fut = queue.popleft()
            yield first, fut.result()
    while queue:
        first, fut = queue.popleft()
        yield first, fut.result()


def batch_by_frames(loaded: Iterable[tuple[Item, np.ndarray | Exception]], batch_frames: int, hop: int = 320) -> Iterator[list[tuple[Item, np.ndarray | Exception]]]:
    """Group loaded items into batches whose padded size (longest x count, in frames) stays within
    ``batch_frames``; a failed item is yielded alone; ``batch_frames <= 0``: one file per batch."""
    batch: list[tuple[Item, np.ndarray]] = []
    longest = 0
    for item, wav in loaded:
        if isinstance(wav, Exception):
            yield [(item, wav)]
            continue
        frames = -(-len(wav) // hop)
        if batch and (batch_frames <= 0 or max(longest, frames) * (len(batch) + 1) > batch_frames):
            yield batch
            batch, longest = [], 0
        batch.append((item, wav))
        longest = max(longest, frames)
    if batch:
        yield batch


def _encode(codec: Codec, good: list[tuple[Item, np.ndarray]]) -> list[tuple[Item, object]]:
    """Codes [8, T] per item, or the exception; a failing batch is retried one file at a time."""
    try:
        encoded = codec.encode_batch([wav for _, wav in good])
        return [(it, encoded.item(i).codes) for i, (it, _) in enumerate(good)]
    except Exception as exc:  # e.g. out of GPU memory on a long batch
        if len(good) == 1:
            return [(good[0][0], exc)]
        log.warning("a batch of %d files failed (%s); encoding them one by one", len(good), exc)
        _free_cache(codec)
        return [r for pair in good for r in _encode(codec, [pair])]


def _free_cache(codec: Codec) -> None:
    import torch

    if codec.device.type == "cuda":
        torch.cuda.empty_cache()


def extract(
    source: str | Path,
    out: str | Path,
    codec: Codec,
    batch_frames: int = 3000,
    shard_size: int = 1000,
    progress: bool = True,
    max_seconds: float | None = 120.0,
    workers: int = 4,
    items: list[Item] | None = None,
) -> dict:
    """Encode every item of ``source`` (or the given ``items``, e.g. ``list_corpus_items``) not yet
    in ``out``; returns counts {total, encoded, skipped_existing, failed}. Failures are listed in
    ``out/failed.tsv``."""
    from tqdm.auto import tqdm

    items = list_items(source) if items is None else list(items)
    writer = ShardWriter(out, codec.name, shard_size=shard_size)
    failures: list[tuple[Item, str]] = []
    seen: set[str] = set()
    todo = []
    for it in items:
        if it.id in seen:
            failures.append((it, f"duplicate id {it.id!r} in the source list"))
        elif it.id not in writer.done:
            todo.append(it)
        seen.add(it.id)
    skipped = sum(1 for it in set(i.id for i in items) if it in writer.done)
    pool = ThreadPoolExecutor(max_workers=workers) if workers > 0 else None
    encoded = 0
    try:
        # similar lengths together: less padding, which the encoder's bidirectional LSTM would see
        # (so batched codes are close to, not identical with, solo codes; batch_frames 0 is exact)
        durations = list(pool.map(_duration, todo)) if pool else [_duration(it) for it in todo]
        todo = [it for _, it in sorted(zip(durations, todo), key=lambda pair: pair[0])]
        bar = tqdm(total=len(todo), desc="extract", unit="file", disable=not progress)
        for batch in batch_by_frames(_load_ahead(todo, pool, max_seconds, ahead=4 * max(workers, 1) + 8), batch_frames, codec.hop_length):
            good = [(it, wav) for it, wav in batch if not isinstance(wav, Exception)]
            results = [(it, wav) for it, wav in batch if isinstance(wav, Exception)] + (_encode(codec, good) if good else [])
            for it, res in results:
                if isinstance(res, Exception):
                    failures.append((it, str(res)))
                    log.warning("skipping %s: %s", it.path, res)
                else:
                    writer.add(it.id, res, it.text, it.speaker, str(it.path))
                    encoded += 1
            bar.update(len(batch))
        bar.close()
    finally:
        writer.close()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        _write_failures(Path(out) / FAILED, failures)
    return {"total": len(items), "encoded": encoded, "skipped_existing": skipped, "failed": len(failures)}


def _write_failures(path: Path, failures: list[tuple[Item, str]]) -> None:
    if not failures:
        path.unlink(missing_ok=True)
        return
    clean = lambda s: " ".join(str(s).split())  # noqa: E731  (one line, no tabs)
    lines = ["path\tid\treason"] + [f"{it.path}\t{it.id}\t{clean(reason)}" for it, reason in failures]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
