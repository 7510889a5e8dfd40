import os
import subprocess
import sys

import soundfile as sf

from tests.audio_helpers import voiced


def run(*args, root):
    return subprocess.run([sys.executable, "-m", "engine", "voices", *args, "--profile", "tiny", "--set", f"paths.voices_dir={root}"],
                          capture_output=True, text=True, timeout=300, env={**os.environ})


def test_voices_cli_roundtrip(tmp_path):
    clip = tmp_path / "me.wav"
    sf.write(clip, voiced(2.0), 16000)
    root = tmp_path / "lib"
    assert "added Me" in run("add", "Me", str(clip), root=root).stdout
    listing = run("list", root=root).stdout
    assert "Me" in listing and "flite-slt" in listing  # bundled voices are listed too
    assert run("rename", "Me", "You", root=root).returncode == 0
    assert run("export", "You", str(tmp_path / "out.wav"), root=root).returncode == 0
    assert sf.read(tmp_path / "out.wav")[1] == 16000
    bad = run("add", "../x", str(clip), root=root)
    assert bad.returncode == 1 and "invalid voice name" in bad.stderr
    assert run("delete", "You", root=root).returncode == 0
    assert "You" not in run("list", root=root).stdout
