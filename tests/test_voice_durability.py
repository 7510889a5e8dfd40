"""Issue 15, part 3: a voice is never lost - a crash (kill -9) injected at every step of an
overwrite, concurrent overwrites, missing files, and leftovers of crashed adds."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.voices import VoiceError, VoiceLibrary
from tests.audio_helpers import voiced

ROOT = Path(__file__).resolve().parent.parent

# Runs one overwrite of 'shared' in a child process that dies (os._exit, like kill -9: no cleanup,
# no except/finally) at the k-th call of any step that changes the disk.
CRASHING_OVERWRITE = textwrap.dedent("""
    import os, shutil, sys
    sys.path.insert(0, {root!r})
    from engine import voices
    from engine.voices import VoiceLibrary
    k, calls = int(sys.argv[1]), [0]
    def crashing(fn):
        def wrapped(*args, **kwargs):
            calls[0] += 1
            if calls[0] == k:
                os._exit(9)
            return fn(*args, **kwargs)
        return wrapped
    voices.os.replace = crashing(os.replace)
    voices.shutil.rmtree = crashing(shutil.rmtree)
    for name in ["_fsync_dir", "_fsync_tree"]:  # the durability steps, where the library has them
        if hasattr(voices, name):
            setattr(voices, name, crashing(getattr(voices, name)))
    lib = VoiceLibrary(sys.argv[2], codec_name="tiny", prompt_seconds=1.0)
    lib.add("shared", sys.argv[3], overwrite=True, description="new")
    print("completed")
""")


def stored(lib: VoiceLibrary, name: str) -> np.ndarray:
    return lib.preview(name)[1]


def test_a_crash_at_any_step_of_an_overwrite_loses_nothing(tmp_path):
    old_clip, new_clip = tmp_path / "old.wav", tmp_path / "new.wav"
    sf.write(old_clip, voiced(1.2, f0=140, seed=1), 16000)
    sf.write(new_clip, voiced(1.2, f0=230, seed=2), 16000)
    script = tmp_path / "crash.py"
    script.write_text(CRASHING_OVERWRITE.format(root=str(ROOT)))
    outcomes = []
    for k in range(1, 30):
        root = tmp_path / f"lib{k}"
        lib = VoiceLibrary(root, codec_name="tiny", prompt_seconds=1.0)
        lib.add("shared", old_clip, description="old")
        lib.add("other", old_clip)
        before = stored(lib, "shared")
        run = subprocess.run([sys.executable, str(script), str(k), str(root), str(new_clip)], capture_output=True, text=True, timeout=120)
        completed = "completed" in run.stdout
        assert completed or run.returncode == 9, run.stderr[-2000:]
        reopened = VoiceLibrary(root, codec_name="tiny", prompt_seconds=1.0)  # the library opened after the crash
        assert reopened.names()[:2] == ["other", "shared"], (k, sorted(p.name for p in root.iterdir()))
        v = reopened.get("shared")
        audio = stored(reopened, "shared")
        assert v.description in ("old", "new") and audio.size > 0
        if v.description == "old":
            np.testing.assert_allclose(audio, before)  # the old voice, whole
        assert json.loads((root / "shared" / "meta.json").read_text())["description"] == v.description
        # nothing half-made is left once the library has been opened and changed again
        reopened.add("after", old_clip)
        assert sorted(p.name for p in root.iterdir() if p.name.startswith(".") and p.name != ".lock") == [], k
        outcomes.append(v.description)
        if completed:
            break
    assert "old" in outcomes and outcomes[-1] == "new", outcomes  # crashes hit the window, and the last run got through


def test_concurrent_overwrites_always_report_the_voice(tmp_path):
    lib = VoiceLibrary(tmp_path / "lib", codec_name="tiny", prompt_seconds=1.0)
    clips = [(16000, voiced(1.1, f0=120 + 20 * i, seed=i)) for i in range(4)]
    lib.add("shared", clips[0])
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        for _ in range(12):
            try:
                v = lib.add("shared", clips[i], overwrite=True, description=str(i))
                assert v.name == "shared"
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

    def reader() -> None:
        for _ in range(300):
            try:
                lib.preview("shared")
                lib.get("shared")
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)] + [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [], [str(e) for e in errors]


def test_a_missing_voice_file_is_reported_by_name_not_by_path(tmp_path):
    lib = VoiceLibrary(tmp_path / "lib", codec_name="tiny", prompt_seconds=1.0)
    lib.add("gone", (16000, voiced(1.1)))
    (tmp_path / "lib" / "gone" / "voice.wav").write_bytes(b"damaged" * 100)  # still listed, its audio unreadable
    with pytest.raises(VoiceError, match="'gone'") as err:
        lib.preview("gone")
    assert str(tmp_path) not in str(err.value)


def test_stale_leftovers_are_removed_when_the_library_is_opened(tmp_path):
    root = tmp_path / "lib"
    lib = VoiceLibrary(root, codec_name="tiny", prompt_seconds=1.0)
    lib.add("kept", (16000, voiced(1.1)))
    for stray in [".tmp-add-abc", ".tmp-add-def", ".trash-123"]:
        (root / stray).mkdir()
        (root / stray / "voice.wav").write_bytes(b"partial")
    # an overwrite that died between moving the old voice aside and renaming the new one in
    (root / "kept").rename(root / f".old-{'0' * 32}-kept")
    reopened = VoiceLibrary(root, codec_name="tiny", prompt_seconds=1.0)
    assert reopened.names() == ["kept"]
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".") and p.name != ".lock") == []
