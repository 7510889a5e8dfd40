"""The voice library: named voice prompts shared by TTS, conversion, chat, the CLI and the UI.

Each voice is a folder ``<root>/<name>/`` with ``voice.wav`` (16 kHz mono, trimmed and cropped
to the prompt length), ``meta.json`` and ``codes-<codec>.npy`` (int16 [8, T], cached per codec:
codes belong to the codec that made them). Adds and renames are atomic (built in a temporary
folder inside the root, then renamed into place), so a failed add leaves nothing behind.
Bundled voices (``assets/voices``) are read-only; their codes are cached in the user's root.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from engine.audio import SAMPLE_RATE, AudioError, AudioSource, load_audio, save_wav
from engine.errors import EngineError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _-]{0,63}$")


class VoiceError(EngineError, ValueError):
    """A voice library operation that cannot be done; the message says why."""


@dataclass
class Voice:
    name: str
    duration: float
    description: str = ""
    source: str = ""
    licence: str = ""
    created: float = 0.0
    bundled: bool = False
    path: str = ""


def check_name(name: str) -> str:
    """A safe voice name: letters, digits, space, '-' and '_', 1-64 characters, not starting with
    a separator; no path tricks."""
    name = (name or "").strip()
    if not NAME_RE.match(name) or ".." in name:
        raise VoiceError(
            f"invalid voice name {name!r}: use 1-64 letters, digits, spaces, '-' or '_' (starting with a letter or digit)"
        )
    return name


def trim_silence(wav: np.ndarray, sample_rate: int = SAMPLE_RATE, threshold_db: float = -40.0, pad_ms: float = 50.0) -> np.ndarray:
    """Cut leading/trailing audio quieter than ``threshold_db`` below the peak (10 ms frames)."""
    frame = sample_rate // 100
    n = len(wav) // frame
    if n == 0:
        return wav
    rms = np.sqrt(np.mean(wav[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(20 * np.log10(rms / (rms.max() + 1e-12)) > threshold_db)
    if loud.size == 0:
        return wav
    pad = int(pad_ms / 1000 * sample_rate)
    return wav[max(loud[0] * frame - pad, 0) : min((loud[-1] + 1) * frame + pad, len(wav))]


class VoiceLibrary:
    def __init__(self, root: str | Path, codec_name: str, bundled_dir: str | Path | None = None, prompt_seconds: float = 3.0):
        self.root = Path(root).expanduser()
        self.codec_name = codec_name
        self.bundled_dir = Path(bundled_dir) if bundled_dir else None
        self.prompt_seconds = prompt_seconds

    # ------------------------------------------------------------------ lookup
    def _user_dir(self, name: str) -> Path:
        return self.root / check_name(name)

    def _find(self, name: str) -> tuple[Path, bool]:
        name = check_name(name)
        for folder in self._folders():
            if folder[0].name.lower() == name.lower():
                return folder
        raise VoiceError(f"no voice named {name!r}; add one first (available: {', '.join(v.name for v in self.list()) or 'none'})")

    def _folders(self) -> list[tuple[Path, bool]]:
        found: list[tuple[Path, bool]] = []
        if self.root.is_dir():
            found += [(p, False) for p in sorted(self.root.iterdir()) if p.is_dir() and not p.name.startswith(".") and (p / "voice.wav").is_file()]
        if self.bundled_dir and self.bundled_dir.is_dir():
            user = {p.name.lower() for p, _ in found}
            found += [(p, True) for p in sorted(self.bundled_dir.iterdir()) if p.is_dir() and (p / "voice.wav").is_file() and p.name.lower() not in user]
        return found

    def _voice(self, folder: Path, bundled: bool) -> Voice:
        meta = {}
        if (folder / "meta.json").is_file():
            try:
                meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                meta = {}
        if "duration" not in meta:
            import soundfile as sf

            meta["duration"] = sf.info(str(folder / "voice.wav")).duration
        return Voice(
            name=folder.name, duration=float(meta.get("duration", 0.0)), description=meta.get("description", ""),
            source=meta.get("source", ""), licence=meta.get("licence", ""), created=float(meta.get("created", 0.0)),
            bundled=bundled, path=str(folder),
        )

    def list(self) -> list[Voice]:
        return [self._voice(p, b) for p, b in self._folders()]

    def names(self) -> list[str]:
        return [v.name for v in self.list()]

    def get(self, name: str) -> Voice:
        return self._voice(*self._find(name))

    def exists(self, name: str) -> bool:
        try:
            self._find(name)
            return True
        except VoiceError:
            return False

    # ------------------------------------------------------------------ changes
    def add(self, name: str, audio: AudioSource, *, codec=None, description: str = "", source: str = "", licence: str = "", overwrite: bool = False) -> Voice:
        """Trim silence, crop to the prompt length (the first seconds after the leading silence),
        store audio + metadata (+ codes when a codec is given). Atomic."""
        name = check_name(name)
        if self.exists(name):
            folder, bundled = self._find(name)
            if bundled or not overwrite:
                raise VoiceError(f"a voice named {name!r} already exists{' (bundled)' if bundled else ''}; choose another name")
        wav = trim_silence(load_audio(audio))
        wav = wav[: int(self.prompt_seconds * SAMPLE_RATE)]
        if len(wav) < SAMPLE_RATE // 2:
            raise AudioError(f"the voice clip has only {len(wav) / SAMPLE_RATE:.2f} s of sound; give at least 1 s (3 s is best)")
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".add-", dir=self.root))
        try:
            save_wav(tmp / "voice.wav", wav)
            meta = {"name": name, "duration": len(wav) / SAMPLE_RATE, "description": description, "source": source,
                    "licence": licence, "created": time.time(), "codec": self.codec_name}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
            if codec is not None:
                np.save(tmp / f"codes-{codec.name}.npy", codec.encode(load_audio(tmp / "voice.wav")).codes.numpy().astype(np.int16))
            target = self.root / name
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self.get(name)

    def rename(self, old: str, new: str) -> Voice:
        folder, bundled = self._find(old)
        new = check_name(new)
        if bundled:
            raise VoiceError(f"{old!r} is a bundled voice and cannot be renamed; add a copy under a new name instead")
        if self.exists(new) and new.lower() != old.lower():
            raise VoiceError(f"a voice named {new!r} already exists")
        os.replace(folder, self.root / new)
        meta_path = self.root / new / "meta.json"
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            meta["name"] = new
            meta_path.write_text(json.dumps(meta, indent=2), encoding="utf-8")
        return self.get(new)

    def delete(self, name: str) -> None:
        folder, bundled = self._find(name)
        if bundled:
            raise VoiceError(f"{name!r} is a bundled voice and cannot be deleted")
        trash = self.root / f".del-{folder.name}-{os.getpid()}"
        os.replace(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def preview(self, name: str) -> tuple[int, np.ndarray]:
        folder, _ = self._find(name)
        return SAMPLE_RATE, load_audio(folder / "voice.wav")

    def load_prompt(self, name: str, codec) -> np.ndarray:
        """The voice's codes [8, T] for ``codec`` (encoded and cached on first use per codec)."""
        folder, bundled = self._find(name)
        cache_dir = (self.root / ".cache" / folder.name) if bundled else folder
        cached = cache_dir / f"codes-{codec.name}.npy"
        if cached.is_file():
            return np.load(cached).astype(np.int64)
        codes = codec.encode(load_audio(folder / "voice.wav")).codes.numpy()
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_dir / f".codes-{codec.name}.{os.getpid()}.npy"
        np.save(tmp, codes.astype(np.int16))
        os.replace(tmp, cached)
        return codes.astype(np.int64)


def voice_dict(v: Voice) -> dict:
    return asdict(v)
