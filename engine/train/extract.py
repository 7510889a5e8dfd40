"""Encode a speech corpus into sharded RVQ codes (engine.train.codes_data format)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from engine.audio import AudioError, load_audio
from engine.codec import Codec
from engine.train.codes_data import ShardWriter

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".mp3"}


@dataclass
class Item:
    id: str
    path: Path
    text: str | None = None
    speaker: str | None = None


def _item_id(path: Path, root: Path | None) -> str:
    rel = path.relative_to(root) if root is not None and path.is_relative_to(root) else Path(path.name)
    return str(rel.with_suffix("")).replace("/", "__")


def list_items(source: str | Path) -> list[Item]:
    """A folder (scanned recursively for audio), a text list (``path`` or ``path<TAB>transcript``
    per line), or JSONL (``{"path", "text"?, "speaker"?, "id"?}``). Relative paths are relative to the list."""
    source = Path(source)
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
        return [Item(_item_id(p, source), p, speaker=p.parent.name if p.parent != source else None) for p in files]
    if not source.is_file():
        raise FileNotFoundError(f"{source} is neither a folder nor a file list")
    items = []
    base = source.parent
    for n, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        if source.suffix == ".jsonl":
            rec = json.loads(line)
            path = Path(rec["path"])
            path = path if path.is_absolute() else base / path
            items.append(Item(rec.get("id") or _item_id(path, base), path, rec.get("text"), rec.get("speaker")))
        else:
            parts = line.split("\t")
            path = Path(parts[0].strip())
            path = path if path.is_absolute() else base / path
            items.append(Item(_item_id(path, base), path, parts[1].strip() if len(parts) > 1 else None))
    return items


def _batches(items: list[Item], batch_seconds: float) -> Iterator[list[tuple[Item, object]]]:
    """Load audio and group it into batches of about ``batch_seconds``; bad files are yielded alone
    with their AudioError."""
    batch, seconds = [], 0.0
    for item in items:
        try:
            wav = load_audio(item.path)
        except AudioError as exc:
            yield [(item, exc)]
            continue
        batch.append((item, wav))
        seconds += len(wav) / 16000
        if seconds >= batch_seconds:  # batch_seconds <= 0: one file per batch (exact solo codes)
            yield batch
            batch, seconds = [], 0.0
    if batch:
        yield batch


def _duration(item: Item) -> float:
    import soundfile as sf

    try:
        return sf.info(str(item.path)).duration
    except Exception:  # unreadable: sorted first, reported when loaded
        return 0.0


def extract(source: str | Path, out: str | Path, codec: Codec, batch_seconds: float = 60.0, shard_size: int = 1000, progress: bool = True) -> dict:
    """Encode every item not yet in ``out``; returns counts. Failures go to ``out/failed.tsv``."""
    from tqdm.auto import tqdm

    items = list_items(source)
    # similar lengths together: less padding, which the encoder's bidirectional LSTM would see
    # (so batched codes are close to, not identical with, solo codes; --batch-seconds 0 is exact)
    writer = ShardWriter(out, codec.name, shard_size=shard_size)
    todo = sorted((it for it in items if it.id not in writer.done), key=_duration)
    skipped = len(items) - len(todo)
    failed = 0
    failed_path = Path(out) / "failed.tsv"
    bar = tqdm(total=len(todo), desc="extract", unit="file", disable=not progress)
    for batch in _batches(todo, batch_seconds):
        bad = [(it, exc) for it, exc in batch if isinstance(exc, Exception)]
        good = [(it, wav) for it, wav in batch if not isinstance(wav, Exception)]
        for it, exc in bad:
            failed += 1
            log.warning("skipping %s: %s", it.path, exc)
            with open(failed_path, "a", encoding="utf-8") as f:
                f.write(f"{it.path}\t{str(exc).replace(chr(9), ' ')}\n")
        if good:
            encoded = codec.encode_batch([wav for _, wav in good])
            for i, (it, _) in enumerate(good):
                writer.add(it.id, encoded.item(i).codes, it.text, it.speaker, str(it.path))
        bar.update(len(batch))
    writer.close()
    bar.close()
    return {"total": len(items), "encoded": len(todo) - failed, "skipped_existing": skipped, "failed": failed}
