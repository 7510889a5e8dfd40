"""The voice library: named voice prompts shared by TTS, conversion, chat, the CLI and the UI.

Layout on disk (``root`` is the user's library, e.g. ``~/.cache/speechgpt-gen/voices``)::

    <root>/<name>/voice.wav     16 kHz mono 16-bit PCM, silence trimmed, cropped to the prompt length
    <root>/<name>/meta.json     name, created, duration, description, source, licence, codec, ...
    <root>/<name>/codes.npy     int16 [8, T]: the codes of voice.wav made by codec ``meta["codec"]``
    <root>/.bundled/<name>/     codes cache of a bundled voice (codes.npy + codes.json)

Bundled voices live read-only in ``bundled_dir/<name>/voice.wav`` (+ ``meta.json``); they are
listed with ``bundled=True``, cannot be renamed or deleted, and their codes are computed on first
use and cached in the user's root (the bundled folder may be read-only).

Codes belong to the codec that made them: ``load_prompt`` re-encodes whenever the cached codes
were made by a codec of another name (or, for bundled voices, from other audio or another prompt
length).

Prompt preparation (``prepare_prompt_audio``): trim leading/trailing silence (10 ms frames,
energy relative to the loudest frame), then, when the clip is longer than the prompt length, keep
the window of that length that holds the most speech frames (the earliest such window, so a clip
of continuous speech keeps its beginning), and scale it to a peak of 0.9.

Changes are atomic and crash-safe: a new voice is built in ``<root>/.tmp-add-*``, its files and
folder fsynced, then renamed into place, so a failed add (bad audio, encoder error, full disk,
kill -9) leaves no voice half-made. Overwriting first renames the old voice to
``<root>/.old-<id>-<name>`` and removes that only after the new one is in place; a library opened
after a crash restores any ``.old-*`` whose voice is missing (the overwrite never happened) and
removes leftover ``.tmp-add-*`` / ``.trash-*`` folders, so a voice is never lost. Deletes move the
folder to ``.trash-*`` before removing it. Mutations and the recovery hold a thread lock and, on
POSIX, a file lock on ``<root>/.lock`` so the UI and the CLI can share one library; any folder
in the temporary forms that exists while the lock is held belongs to a process that died.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from engine.audio import SAMPLE_RATE, AudioError, AudioSource, UploadedFile, load_audio, save_wav
from engine.errors import EngineError

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _-]{0,63}")
# device names that Windows refuses as file names; refused everywhere so a library can be copied
RESERVED_NAMES = {"con", "prn", "aux", "nul"} | {f"{p}{i}" for p in ("com", "lpt") for i in range(1, 10)}
MIN_PROMPT_SECONDS = 0.5
MAX_SOURCE_SECONDS = 600.0  # longer uploads are refused before any work (a prompt needs seconds)
OLD_PREFIX = ".old-"  # an overwritten voice kept until its replacement is in place
WAV, META, CODES = "voice.wav", "meta.json", "codes.npy"
BUNDLED_CACHE = ".bundled"


class VoiceError(EngineError, ValueError):
    """A voice library operation that cannot be done; the message says why and what to do."""


@dataclass
class Voice:
    """One library entry (what ``list``/``get`` return)."""

    name: str
    duration: float  # seconds of audio in voice.wav
    description: str = ""
    source: str = ""  # where the audio came from
    licence: str = ""
    created: str = ""  # ISO 8601, UTC
    bundled: bool = False
    path: str = ""  # the voice's folder
    codec: str = ""  # the codec whose codes are cached ("" = none yet)
    transcript: str = ""  # what is said in voice.wav, when known


def check_name(name: object) -> str:
    """Return the cleaned (stripped) name, or raise VoiceError when it is not a safe voice name.

    Safe: 1-64 characters, letters, digits, spaces, '-' and '_', starting with a letter or digit
    (so no leading dot or dash, no path separators, no '..'), and not a reserved device name."""
    if not isinstance(name, str):
        raise VoiceError(f"a voice name must be text, got {type(name).__name__}")
    clean = name.strip()
    if not NAME_RE.fullmatch(clean):
        shown = clean if len(clean) <= 80 else clean[:77] + "..."
        raise VoiceError(
            f"invalid voice name {shown!r}: use 1-64 characters (letters, digits, spaces, '-' or '_'), "
            "starting with a letter or digit; no dots, slashes or other symbols"
        )
    if clean.lower() in RESERVED_NAMES:
        raise VoiceError(f"{clean!r} is a reserved device name on some systems; choose another voice name")
    return clean


def _frame_rms(wav: np.ndarray, frame: int) -> np.ndarray:
    n = len(wav) // frame
    return np.sqrt(np.mean(wav[: n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1) + 1e-12)


def trim_silence(wav: np.ndarray, sample_rate: int = SAMPLE_RATE, threshold_db: float = -40.0, pad_ms: float = 50.0) -> np.ndarray:
    """Cut leading/trailing audio whose 10 ms frames are ``threshold_db`` below the loudest frame,
    keeping ``pad_ms`` of margin. Returns the clip unchanged when it is shorter than a frame."""
    frame = sample_rate // 100
    rms = _frame_rms(wav, frame)
    if rms.size == 0:
        return wav
    loud = np.flatnonzero(20 * np.log10(rms / rms.max()) > threshold_db)
    pad = int(pad_ms / 1000 * sample_rate)
    return wav[max(int(loud[0]) * frame - pad, 0) : min((int(loud[-1]) + 1) * frame + pad, len(wav))]


def prepare_prompt_audio(wav: np.ndarray, seconds: float, sample_rate: int = SAMPLE_RATE, peak: float = 0.9) -> np.ndarray:
    """Trim silence, keep the ``seconds``-long window with the most speech, normalise the peak.

    Raises AudioError when less than ``MIN_PROMPT_SECONDS`` of sound is left."""
    wav = trim_silence(np.asarray(wav, dtype=np.float32), sample_rate)
    size = int(round(seconds * sample_rate))
    if len(wav) > size:
        frame = sample_rate // 100
        rms = _frame_rms(wav, frame)
        active = (20 * np.log10(rms / rms.max()) > -35.0).astype(np.int64)  # [F]
        span = size // frame
        counts = np.convolve(active, np.ones(span, dtype=np.int64), mode="valid")  # speech frames per window
        start = int(np.argmax(counts)) * frame  # argmax = the earliest best window
        wav = wav[start : start + size]
    if len(wav) < MIN_PROMPT_SECONDS * sample_rate:
        raise AudioError(
            f"the voice clip has only {len(wav) / sample_rate:.2f} s of sound after trimming silence; "
            f"record at least 1 s of speech ({seconds:g} s is best)"
        )
    top = float(np.max(np.abs(wav)))
    if top > 0:
        wav = wav * min(peak / top, 10.0)  # at most +20 dB
    return np.ascontiguousarray(wav, dtype=np.float32)


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (temp file in the same folder, then rename)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    """Make a folder's entries (renames, new files) durable; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    """fsync every file in ``folder`` and the folder itself."""
    for p in folder.iterdir():
        if p.is_file():
            with open(p, "rb+") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(folder)


def _save_codes(path: Path, codes: np.ndarray) -> None:
    """Save codes [n_q, T] as int16 (int32 if a codebook is larger) atomically."""
    dtype = np.int16 if codes.size == 0 or int(codes.max()) <= np.iinfo(np.int16).max else np.int32
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.tmp.npy")
    try:
        np.save(tmp, codes.astype(dtype))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _load_codes(path: Path, codec) -> np.ndarray | None:
    """Cached codes [n_q, T] when the file is readable and fits ``codec``; None otherwise."""
    try:
        codes = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    n_q = int(getattr(codec, "n_q", codes.shape[0] if codes.ndim == 2 else -1))
    size = int(getattr(codec, "codebook_size", 1 << 15))
    if codes.ndim != 2 or codes.shape[0] != n_q or codes.shape[1] == 0 or codes.min() < 0 or codes.max() >= size:
        return None
    return codes


def _describe_source(source: object) -> str:
    if isinstance(source, (str, os.PathLike)):
        return f"file {Path(source).name}"
    if isinstance(source, (bytes, bytearray, UploadedFile)):
        return "uploaded audio"
    if isinstance(source, tuple):
        return "recording"
    return "audio samples"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class VoiceLibrary:
    """Named voice prompts on disk. Cheap to construct: nothing is read or written until used."""

    @classmethod
    def from_config(cls, config) -> "VoiceLibrary":
        """The library an ``AppConfig`` names (paths.voices_dir, bundled voices, the codec, the prompt length)."""
        paths = config.paths
        return cls(config.resolve_path(paths.voices_dir), codec_name=config.codec.name,
                   bundled_dir=config.resolve_path(paths.bundled_voices_dir), prompt_seconds=config.perceptual.prompt_seconds)

    def __init__(self, root: str | Path, codec_name: str, bundled_dir: str | Path | None = None, prompt_seconds: float = 3.0):
        if prompt_seconds < MIN_PROMPT_SECONDS:
            raise VoiceError(f"prompt_seconds must be at least {MIN_PROMPT_SECONDS} s, got {prompt_seconds}")
        self.root = Path(root).expanduser()
        self.codec_name = codec_name
        self.bundled_dir = Path(bundled_dir).expanduser() if bundled_dir else None
        self.prompt_seconds = float(prompt_seconds)
        self._lock = threading.RLock()
        self._depth = 0  # how deep the owning thread is inside _locked
        self._recovered = False

    # ------------------------------------------------------------------ locking, housekeeping
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Thread lock + (POSIX) an exclusive file lock on <root>/.lock for mutations; re-entrant
        within a thread (the file lock is taken once). Runs the crash recovery first."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self.root.mkdir(parents=True, exist_ok=True)
            try:
                import fcntl
            except ImportError:  # Windows: the thread lock only
                fcntl = None
            with open(self.root / ".lock", "a+") as handle:
                if fcntl is not None:
                    fcntl.flock(handle, fcntl.LOCK_EX)
                self._depth = 1
                try:
                    self._recover()
                    yield
                finally:
                    self._depth = 0
                    if fcntl is not None:
                        fcntl.flock(handle, fcntl.LOCK_UN)

    def _recover(self) -> None:
        """Finish what a crashed process left (call with the lock held): restore an overwritten
        voice whose replacement never arrived, remove half-made adds and unfinished deletes."""
        if not self.root.is_dir():
            return
        for p in sorted(self.root.glob(OLD_PREFIX + "*")):
            name = p.name[len(OLD_PREFIX) + 33 :]  # .old-<32 hex>-<name>
            target = self.root / name
            if name and NAME_RE.fullmatch(name) and not (target / WAV).is_file() and (p / WAV).is_file():
                if target.exists():
                    shutil.rmtree(target, ignore_errors=True)
                os.replace(p, target)
                _fsync_dir(self.root)
            else:
                shutil.rmtree(p, ignore_errors=True)
        for pattern in (".tmp-*", ".trash-*"):
            for p in self.root.glob(pattern):
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
        self._recovered = True

    def _ensure_recovered(self) -> None:
        """Recover once per library object, before the first lookup (the library is "opened")."""
        if not self._recovered and self.root.is_dir() and any(
            p.name.startswith((OLD_PREFIX, ".tmp-", ".trash-")) for p in self.root.iterdir()
        ):
            with self._locked():
                pass  # _locked runs the recovery
        self._recovered = True

    # ------------------------------------------------------------------ lookup
    def _user_folders(self) -> list[Path]:
        self._ensure_recovered()
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir() if not p.name.startswith(".") and p.is_dir() and (p / WAV).is_file()]
        return sorted(found, key=lambda p: p.name.lower())

    def _bundled_folders(self) -> list[Path]:
        if not self.bundled_dir or not self.bundled_dir.is_dir():
            return []
        found = [p for p in self.bundled_dir.iterdir() if NAME_RE.fullmatch(p.name) and p.is_dir() and (p / WAV).is_file()]
        return sorted(found, key=lambda p: p.name.lower())

    def _folders(self) -> list[tuple[Path, bool]]:
        """(folder, bundled) of every voice: the user's first, then bundled ones not shadowed."""
        user = self._user_folders()
        taken = {p.name.lower() for p in user}
        return [(p, False) for p in user] + [(p, True) for p in self._bundled_folders() if p.name.lower() not in taken]

    def _lookup(self, name: str) -> tuple[Path, bool] | None:
        key = check_name(name).lower()
        for folder, bundled in self._folders():
            if folder.name.lower() == key:
                return folder, bundled
        return None

    def _find(self, name: str) -> tuple[Path, bool]:
        found = self._lookup(name)
        if found is None:  # maybe mid-overwrite in another thread or process: look again under the lock
            with self._locked():
                found = self._lookup(name)
        if found is None:
            available = ", ".join(self.names()) or "none yet"
            raise VoiceError(f"no voice named {name.strip()!r} (available: {available}); add it first or pick another")
        return found

    def _voice(self, folder: Path, bundled: bool) -> Voice:
        meta = _read_json(folder / META)
        duration = meta.get("duration")
        if not isinstance(duration, (int, float)):
            import soundfile as sf

            try:
                duration = sf.info(str(folder / WAV)).duration
            except RuntimeError:
                duration = 0.0
        created = meta.get("created", "")
        if isinstance(created, (int, float)):  # older libraries stored a POSIX time
            created = datetime.fromtimestamp(created, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        codec = ""
        if bundled:
            cache = _read_json(self.root / BUNDLED_CACHE / folder.name / "codes.json")
            codec = str(cache.get("codec", "")) if (self.root / BUNDLED_CACHE / folder.name / CODES).is_file() else ""
        elif (folder / CODES).is_file():
            codec = str(meta.get("codec") or "")
        return Voice(
            name=folder.name,
            duration=float(duration),
            description=str(meta.get("description", "")),
            source=str(meta.get("source", "")),
            licence=str(meta.get("licence", "")),
            created=str(created),
            bundled=bundled,
            path=str(folder),
            codec=codec,
            transcript=str(meta.get("transcript", "")),
        )

    def list(self) -> list[Voice]:
        """Every voice: the user's (sorted by name), then the bundled ones."""
        return [self._voice(p, b) for p, b in self._folders()]

    def names(self) -> list[str]:
        return [p.name for p, _ in self._folders()]

    def get(self, name: str) -> Voice:
        """The voice called ``name`` (case-insensitive); VoiceError if there is none."""
        folder, bundled = self._find(name)
        if not (folder / META).is_file() and not bundled:  # mid-swap: read it with no change in progress
            with self._locked():
                folder, bundled = self._find(name)
                return self._voice(folder, bundled)
        return self._voice(folder, bundled)

    def exists(self, name: str) -> bool:
        try:
            return self._lookup(name) is not None
        except VoiceError:
            return False

    # ------------------------------------------------------------------ changes
    def add(
        self,
        name: str,
        audio_source: AudioSource,
        *,
        codec=None,
        description: str = "",
        source: str | None = None,
        licence: str = "provided by the user",
        transcript: str = "",
        overwrite: bool = False,
    ) -> Voice:
        """Add a voice from any audio ``load_audio`` accepts: trim silence, keep the
        ``prompt_seconds`` window with the most speech, store it (and its codes when ``codec`` is
        given; otherwise they are made on first ``load_prompt``). Atomic: on any error nothing is
        left behind and an overwritten voice is kept as it was."""
        name = check_name(name)
        existing = self._lookup(name)
        if existing is not None:
            if existing[1]:
                raise VoiceError(f"{existing[0].name!r} is a bundled voice; choose another name for yours")
            if not overwrite:
                raise VoiceError(f"a voice named {existing[0].name!r} already exists; choose another name or overwrite it")
        wav = prepare_prompt_audio(load_audio(audio_source, max_seconds=MAX_SOURCE_SECONDS, min_seconds=MIN_PROMPT_SECONDS), self.prompt_seconds)
        with self._locked():
            existing = self._lookup(name)  # again, under the lock
            if existing is not None and not overwrite:
                raise VoiceError(f"a voice named {existing[0].name!r} already exists; choose another name or overwrite it")
            if existing is not None and existing[1]:
                raise VoiceError(f"{existing[0].name!r} is a bundled voice; choose another name for yours")
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-add-", dir=self.root))
            try:
                save_wav(tmp / WAV, wav)
                meta: dict[str, Any] = {
                    "name": name,
                    "created": _now_iso(),
                    "duration": round(len(wav) / SAMPLE_RATE, 4),
                    "sample_rate": SAMPLE_RATE,
                    "description": description,
                    "source": _describe_source(audio_source) if source is None else source,
                    "licence": licence,
                    "transcript": transcript,
                    "codec": None,
                }
                if codec is not None:
                    # encode what was stored (16-bit), so cached and re-made codes agree
                    codes = codec.encode(load_audio(tmp / WAV)).codes
                    _save_codes(tmp / CODES, np.asarray(codes.cpu() if hasattr(codes, "cpu") else codes))
                    meta["codec"] = codec.name
                _write_json(tmp / META, meta)
                _fsync_tree(tmp)  # the new voice is on disk before any rename makes it visible
                target = self.root / name
                if existing is None:
                    os.replace(tmp, target)
                    _fsync_dir(self.root)
                else:  # overwrite: the old voice stays on disk until the new one is in place
                    old = self.root / f"{OLD_PREFIX}{uuid.uuid4().hex}-{existing[0].name}"
                    os.replace(existing[0], old)
                    _fsync_dir(self.root)
                    try:
                        os.replace(tmp, target)
                        _fsync_dir(self.root)
                    except BaseException:
                        os.replace(old, existing[0])
                        raise
                    shutil.rmtree(old, ignore_errors=True)
                    shutil.rmtree(self.root / BUNDLED_CACHE / existing[0].name, ignore_errors=True)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            return self._voice(target, False)  # read under the lock: a concurrent overwrite cannot hide it

    def rename(self, old: str, new: str) -> Voice:
        """Rename a user voice (a case-only change is allowed). Bundled voices cannot be renamed."""
        new = check_name(new)
        with self._locked():
            folder, bundled = self._find(old)
            if bundled:
                raise VoiceError(f"{folder.name!r} is a bundled voice and cannot be renamed; add a copy under a new name instead")
            clash = self._lookup(new)
            if clash is not None and clash[0] != folder:
                raise VoiceError(f"a voice named {clash[0].name!r} already exists; choose another name")
            target = self.root / new
            if folder != target:
                os.replace(folder, target)
            meta = _read_json(target / META)
            meta["name"] = new
            _write_json(target / META, meta)
        return self.get(new)

    def delete(self, name: str) -> None:
        """Delete a user voice. Bundled voices cannot be deleted."""
        with self._locked():
            folder, bundled = self._find(name)
            if bundled:
                raise VoiceError(f"{folder.name!r} is a bundled voice and cannot be deleted")
            trash = self.root / f".trash-{uuid.uuid4().hex}"
            os.replace(folder, trash)  # atomic: the voice is gone from listings at once
            shutil.rmtree(trash, ignore_errors=True)
            shutil.rmtree(self.root / BUNDLED_CACHE / folder.name, ignore_errors=True)

    def _stored_audio(self, name: str) -> tuple[Path, bool, np.ndarray]:
        """(folder, bundled, samples) of a voice's clip. When the clip vanishes under us (a
        concurrent overwrite swapping folders) the lookup is repeated under the lock; a clip that
        is really gone is reported by voice name, never by library path."""
        folder, bundled = self._find(name)
        try:
            return folder, bundled, load_audio(folder / WAV, allow_silence=True)
        except (AudioError, OSError):
            pass  # perhaps swapped while we read it: once more, with no change in progress
        with self._locked():
            folder, bundled = self._find(name)
            if not (folder / WAV).is_file():
                raise VoiceError(f"the audio of voice {folder.name!r} is missing; delete the voice and add it again")
            try:
                return folder, bundled, load_audio(folder / WAV, allow_silence=True)
            except (AudioError, OSError):
                raise VoiceError(f"the audio of voice {folder.name!r} is damaged; delete the voice and add it again") from None

    def preview(self, name: str) -> tuple[int, np.ndarray]:
        """(sample_rate, float32 samples) of the voice's stored clip, for playback."""
        return SAMPLE_RATE, self._stored_audio(name)[2]

    def load_prompt(self, name: str, codec):
        """The voice's codes, a LongTensor [n_q, T], made by ``codec``.

        Cached codes are used when ``codec.name`` made them; otherwise voice.wav is encoded again
        and the cache replaced. Bundled voices are cropped to ``prompt_seconds`` first and cached
        under ``<root>/.bundled/<name>/``."""
        import torch

        folder, bundled = self._find(name)
        if bundled:
            return torch.from_numpy(self._bundled_codes(folder, codec).astype(np.int64))
        meta = _read_json(folder / META)
        if meta.get("codec") == codec.name:
            codes = _load_codes(folder / CODES, codec)
            if codes is not None:
                return torch.from_numpy(codes.astype(np.int64))
        folder, _, wav = self._stored_audio(name)
        codes = self._encode(codec, wav)
        with self._locked():
            if folder.is_dir():  # not deleted or renamed meanwhile
                _save_codes(folder / CODES, codes)
                meta = _read_json(folder / META)
                meta["codec"] = codec.name
                _write_json(folder / META, meta)
        return torch.from_numpy(codes.astype(np.int64))

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _encode(codec, wav: np.ndarray) -> np.ndarray:
        codes = codec.encode(wav).codes  # [n_q, T]
        return np.asarray(codes.detach().cpu() if hasattr(codes, "detach") else codes).astype(np.int64)

    def _bundled_codes(self, folder: Path, codec) -> np.ndarray:
        cache = self.root / BUNDLED_CACHE / folder.name
        key = {"codec": codec.name, "wav_sha256": _sha256(folder / WAV), "prompt_seconds": self.prompt_seconds}
        info = _read_json(cache / "codes.json")
        if all(info.get(k) == v for k, v in key.items()):
            codes = _load_codes(cache / CODES, codec)
            if codes is not None:
                return codes
        wav = prepare_prompt_audio(load_audio(folder / WAV, allow_silence=True), self.prompt_seconds)
        codes = self._encode(codec, wav)
        with self._locked():
            cache.mkdir(parents=True, exist_ok=True)
            _save_codes(cache / CODES, codes)
            _write_json(cache / "codes.json", key)
        return codes


def voice_dict(v: Voice) -> dict[str, Any]:
    """A voice as a plain dict (JSON, UI tables)."""
    return asdict(v)
