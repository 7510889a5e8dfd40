"""Voice library: persistence, safe names, atomic adds, codes per codec, bundled voices."""

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from engine.audio import AudioError
from engine.voices import VoiceError, VoiceLibrary, check_name, prepare_prompt_audio, trim_silence
from tests.audio_helpers import voiced

REPO = Path(__file__).resolve().parents[1]


def padded(seconds=2.0, seed=0):
    """Speech-like audio with 0.5 s of silence before and 1 s after."""
    return np.concatenate([np.zeros(8000, np.float32), voiced(seconds, seed=seed), np.zeros(16000, np.float32)])


def visible(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if not p.name.startswith("."))


class Renamed:
    """The tiny codec under another name (codes belong to a codec name)."""

    def __init__(self, codec, name):
        self._codec, self.name = codec, name
        self.n_q, self.codebook_size = codec.n_q, codec.codebook_size
        self.calls = 0

    def encode(self, wav):
        self.calls += 1
        return self._codec.encode(wav)


class Broken:
    name = "broken"

    def encode(self, wav):
        raise RuntimeError("encoder crashed")


def test_add_list_survives_restart(tmp_path, tiny_codec):
    lib = VoiceLibrary(tmp_path, "tiny", prompt_seconds=1.5)
    v = lib.add("Alice", (16000, padded()), codec=tiny_codec, description="test voice")
    assert 1.4 < v.duration <= 1.5 + 1e-6  # trimmed, then cropped
    assert v.codec == "tiny" and not v.bundled and v.description == "test voice" and v.created.endswith("Z")
    folder = tmp_path / "Alice"
    codes_file = np.load(folder / "codes.npy")
    assert codes_file.dtype == np.int16 and codes_file.shape == (8, 75)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["name"] == "Alice" and meta["codec"] == "tiny" and meta["licence"] and meta["source"] == "recording"
    assert sf.info(str(folder / "voice.wav")).samplerate == 16000

    again = VoiceLibrary(tmp_path, "tiny", prompt_seconds=1.5)  # a restart
    assert again.names() == ["Alice"] and again.get("alice").description == "test voice"
    codes = again.load_prompt("alice", tiny_codec)  # case-insensitive
    assert isinstance(codes, torch.Tensor) and codes.dtype == torch.long and codes.shape == (8, 75)
    assert torch.equal(codes, torch.from_numpy(codes_file.astype(np.int64)))
    sr, wav = again.preview("ALICE")
    assert sr == 16000 and wav.size == int(1.5 * 16000)
    assert again.rename("Alice", "Bob").name == "Bob"
    assert again.names() == ["Bob"] and json.loads((tmp_path / "Bob" / "meta.json").read_text())["name"] == "Bob"
    assert VoiceLibrary(tmp_path, "tiny").names() == ["Bob"]
    again.delete("bob")
    assert again.names() == [] and visible(tmp_path) == []
    with pytest.raises(VoiceError, match="no voice named"):
        again.get("Bob")


@pytest.mark.parametrize(
    "name",
    ["../evil", "a/b", ".hidden", "", "   ", "x" * 65, "bad\\name", "semi;colon", "..", "nul\x00", "-rf", "CON",
     "caf\u00e9", "a.b", "tab\there", 42],
)
def test_unsafe_names_refused(tmp_path, name):
    lib = VoiceLibrary(tmp_path / "lib", "tiny")
    with pytest.raises(VoiceError, match="voice name|reserved"):
        lib.add(name, (16000, voiced(1.0)))
    assert not (tmp_path / "evil").exists() and not (tmp_path / "lib").exists()


def test_names_whitelist_and_renames(tmp_path):
    assert check_name("  My voice_2-b ") == "My voice_2-b"
    assert check_name("x" * 64) == "x" * 64
    lib = VoiceLibrary(tmp_path, "tiny")
    lib.add("One", (16000, voiced(1.0)))
    lib.add("Two", (16000, voiced(1.0, seed=1)))
    with pytest.raises(VoiceError):
        lib.rename("One", "../One")
    with pytest.raises(VoiceError, match="already exists"):
        lib.rename("One", "TWO")
    assert lib.rename("One", "ONE").name == "ONE"  # a case-only rename is allowed
    assert lib.names() == ["ONE", "Two"] and visible(tmp_path) == ["ONE", "Two"]


def test_failed_add_leaves_nothing(tmp_path, tiny_codec):
    lib = VoiceLibrary(tmp_path, "tiny")
    with pytest.raises(AudioError):
        lib.add("Silent", (16000, np.zeros(16000, np.int16)), codec=tiny_codec)
    with pytest.raises(AudioError):
        lib.add("Garbage", b"this is not audio at all", codec=tiny_codec)
    with pytest.raises(AudioError, match="of sound"):  # a click is not a voice
        lib.add("Click", (16000, np.r_[np.zeros(8000), voiced(0.2), np.zeros(8000)].astype(np.float32)))
    with pytest.raises(RuntimeError, match="crashed"):
        lib.add("Crash", (16000, voiced(1.0)), codec=Broken())
    assert lib.names() == [] and [p for p in tmp_path.iterdir() if p.name != ".lock"] == []

    lib.add("Dup", (16000, voiced(1.0)), codec=tiny_codec)
    before = {p.name: p.read_bytes() for p in (tmp_path / "Dup").iterdir()}
    with pytest.raises(VoiceError, match="already exists"):
        lib.add("dup", (16000, voiced(1.0, seed=3)))
    with pytest.raises(RuntimeError):  # a failed overwrite keeps the old voice as it was
        lib.add("dup", (16000, voiced(1.5, seed=3)), codec=Broken(), overwrite=True)
    assert {p.name: p.read_bytes() for p in (tmp_path / "Dup").iterdir()} == before
    assert visible(tmp_path) == ["Dup"] and not list(tmp_path.glob(".tmp-*")) and not list(tmp_path.glob(".trash-*"))

    replaced = lib.add("dup", (16000, voiced(1.5, seed=3)), overwrite=True)
    assert replaced.name == "dup" and visible(tmp_path) == ["dup"] and replaced.codec == ""


def test_codes_belong_to_their_codec(tmp_path, tiny_codec):
    lib = VoiceLibrary(tmp_path, "tiny", prompt_seconds=1.0)
    lib.add("Carol", (16000, voiced(2.0)))  # no codec: codes made on first use
    assert not (tmp_path / "Carol" / "codes.npy").exists() and lib.get("Carol").codec == ""
    first = lib.load_prompt("Carol", tiny_codec)
    assert first.shape == (8, 50) and lib.get("Carol").codec == "tiny"

    other = Renamed(tiny_codec, "other")
    lib.load_prompt("Carol", other)
    assert other.calls == 1 and lib.get("Carol").codec == "other"  # re-encoded for the other codec
    lib.load_prompt("Carol", other)
    assert other.calls == 1  # then cached

    np.save(tmp_path / "Carol" / "codes.npy", np.full((3, 5), 9999, np.int16))  # corrupt cache
    assert torch.equal(lib.load_prompt("Carol", other), first)
    assert other.calls == 2


def test_bundled_voices_read_only_and_cached(tmp_path, tiny_codec):
    bundled = tmp_path / "bundled"
    VoiceLibrary(bundled, "tiny", prompt_seconds=4.0).add("Narrator", (16000, voiced(3.0)), licence="public domain")
    files_before = sorted(p.relative_to(bundled) for p in bundled.rglob("*") if p.name != ".lock")
    lib = VoiceLibrary(tmp_path / "user", "tiny", bundled_dir=bundled, prompt_seconds=1.0)
    assert [(v.name, v.bundled, v.licence) for v in lib.list()] == [("Narrator", True, "public domain")]
    with pytest.raises(VoiceError, match="bundled"):
        lib.delete("Narrator")
    with pytest.raises(VoiceError, match="bundled"):
        lib.rename("narrator", "Other")
    with pytest.raises(VoiceError, match="bundled"):
        lib.add("NARRATOR", (16000, voiced(1.0)), overwrite=True)
    codes = lib.load_prompt("Narrator", tiny_codec)
    assert codes.shape == (8, 50)  # cropped to this library's prompt length
    cache = tmp_path / "user" / ".bundled" / "Narrator"
    assert (cache / "codes.npy").is_file() and json.loads((cache / "codes.json").read_text())["codec"] == "tiny"
    assert torch.equal(lib.load_prompt("Narrator", tiny_codec), codes) and lib.get("Narrator").codec == "tiny"
    assert sorted(p.relative_to(bundled) for p in bundled.rglob("*") if p.name != ".lock") == files_before

    longer = VoiceLibrary(tmp_path / "user", "tiny", bundled_dir=bundled, prompt_seconds=2.0)
    assert longer.load_prompt("Narrator", tiny_codec).shape == (8, 100)  # new prompt length: re-encoded
    lib.add("Mine", (16000, voiced(1.0)))
    assert [(v.name, v.bundled) for v in lib.list()] == [("Mine", False), ("Narrator", True)]


def test_prompt_window_has_the_most_speech():
    quiet = 0.001 * np.random.default_rng(0).standard_normal(32000).astype(np.float32)
    wav = np.concatenate([voiced(0.6, seed=1), quiet, voiced(3.0, seed=2)])  # a short word, a pause, a sentence
    out = prepare_prompt_audio(wav, 2.5)
    assert out.size == 40000 and abs(np.abs(out).max() - 0.9) < 1e-3
    frames = np.sqrt(np.mean(out[: out.size // 160 * 160].reshape(-1, 160) ** 2, axis=1))
    assert frames.min() > 0.01  # the window lies inside the long sentence: no pause in it
    short = prepare_prompt_audio(padded(1.0), 3.0)
    assert 16000 <= short.size <= 16000 + 2 * 800 + 320  # shorter than the prompt: only trimmed


def test_trim_silence():
    y = trim_silence(padded(1.0))
    assert 16000 <= y.size <= 16000 + 2 * 800 + 320
    assert trim_silence(np.zeros(10, np.float32)).size == 10


def test_concurrent_adds(tmp_path):
    lib = VoiceLibrary(tmp_path, "tiny", prompt_seconds=1.0)
    errors = []

    def worker(i):
        try:
            lib.add(f"Voice {i}", (16000, voiced(1.0, seed=i)))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and VoiceLibrary(tmp_path, "tiny").names() == [f"Voice {i}" for i in range(6)]


def test_repository_bundled_voices(tmp_path, tiny_codec):
    """The voices shipped in assets/voices load, are short 16 kHz mono clips, and say where they come from."""
    root = REPO / "assets" / "voices"
    lib = VoiceLibrary(tmp_path, "tiny", bundled_dir=root, prompt_seconds=3.0)
    voices = lib.list()
    assert len(voices) >= 3 and all(v.bundled for v in voices)
    readme = (root / "README.md").read_text()
    for v in voices:
        info = sf.info(str(Path(v.path) / "voice.wav"))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert 3.0 <= info.duration <= 6.0 and (Path(v.path) / "voice.wav").stat().st_size < 250_000
        assert v.licence and v.source and v.transcript and v.name in readme
        sr, wav = lib.preview(v.name)
        assert sr == 16000 and np.abs(wav).max() > 0.1
    assert lib.load_prompt(voices[0].name, tiny_codec).shape == (8, 150)
    assert not list(root.rglob("codes*")) and not (root / ".lock").exists()  # nothing written there
