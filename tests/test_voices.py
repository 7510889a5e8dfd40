import numpy as np
import pytest

from engine.audio import AudioError
from engine.voices import VoiceError, VoiceLibrary, trim_silence
from tests.audio_helpers import voiced


def padded(seconds=2.0):
    return np.concatenate([np.zeros(8000, np.float32), voiced(seconds), np.zeros(16000, np.float32)])


def test_add_list_survives_restart(tmp_path, tiny_codec):
    lib = VoiceLibrary(tmp_path, "tiny", prompt_seconds=1.5)
    v = lib.add("Alice", (16000, padded()), codec=tiny_codec, description="test")
    assert v.duration <= 1.5 + 1e-6 and v.duration > 1.4  # trimmed, then cropped
    again = VoiceLibrary(tmp_path, "tiny", prompt_seconds=1.5)
    assert again.names() == ["Alice"]
    codes = again.load_prompt("alice", tiny_codec)  # case-insensitive
    assert codes.shape[0] == 8 and codes.shape[1] == 75
    sr, wav = again.preview("Alice")
    assert sr == 16000 and wav.size == int(1.5 * 16000)
    again.rename("Alice", "Bob")
    assert again.names() == ["Bob"]
    again.delete("Bob")
    assert again.names() == [] and [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == []


@pytest.mark.parametrize("name", ["../evil", "a/b", ".hidden", "", "x" * 65, "bad\\name", "semi;colon", "..", "nul\x00"])
def test_unsafe_names_refused(tmp_path, name):
    lib = VoiceLibrary(tmp_path, "tiny")
    with pytest.raises(VoiceError):
        lib.add(name, (16000, voiced(1.0)))
    assert not any(tmp_path.parent.glob("evil"))


def test_failed_add_leaves_nothing(tmp_path, tiny_codec):
    lib = VoiceLibrary(tmp_path, "tiny")
    with pytest.raises(AudioError):
        lib.add("Silent", (16000, np.zeros(16000, np.int16)), codec=tiny_codec)

    class Broken:
        name = "broken"

        def encode(self, wav):
            raise RuntimeError("encoder crashed")

    with pytest.raises(RuntimeError):
        lib.add("Crash", (16000, voiced(1.0)), codec=Broken())
    assert list(tmp_path.iterdir()) == [] and lib.names() == []
    lib.add("Dup", (16000, voiced(1.0)))
    with pytest.raises(VoiceError, match="already exists"):
        lib.add("dup", (16000, voiced(1.0)))


def test_bundled_voices_read_only_and_cached(tmp_path, tiny_codec):
    bundled = tmp_path / "bundled"
    VoiceLibrary(bundled, "tiny").add("Narrator", (16000, voiced(2.0)))
    lib = VoiceLibrary(tmp_path / "user", "tiny", bundled_dir=bundled)
    assert [(v.name, v.bundled) for v in lib.list()] == [("Narrator", True)]
    with pytest.raises(VoiceError, match="bundled"):
        lib.delete("Narrator")
    with pytest.raises(VoiceError, match="bundled"):
        lib.rename("Narrator", "Other")
    codes = lib.load_prompt("Narrator", tiny_codec)
    assert (tmp_path / "user" / ".cache" / "Narrator" / "codes-tiny.npy").is_file()
    assert np.array_equal(lib.load_prompt("Narrator", tiny_codec), codes)


def test_trim_silence():
    x = padded(1.0)
    y = trim_silence(x)
    assert 16000 <= y.size <= 16000 + 2 * 800 + 320
