import subprocess
import sys

import pytest
import soundfile as sf

from tests.audio_helpers import voiced


@pytest.mark.parametrize("extra", [[], ["--chain", "explicit", "--steps", "2"], ["--perceptual", "soundstorm"]])
def test_vc_cli_tiny(tmp_path, extra):
    src, voice, out = tmp_path / "src.wav", tmp_path / "voice.wav", tmp_path / "out.wav"
    sf.write(src, voiced(1.37, seed=1), 16000)
    sf.write(voice, voiced(2.0, f0=220, seed=2), 22050)
    run = subprocess.run([sys.executable, "-m", "engine", "vc", "--profile", "tiny", "--source", str(src), "--voice", str(voice),
                          "--out", str(out), "--seed", "0", *extra], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    data, sr = sf.read(out)
    assert sr == 16000 and data.ndim == 1
    assert abs(len(data) - round(1.37 * 16000)) <= 320  # within one 50 Hz frame of the source
    assert "RTF" in run.stdout


def test_vc_cli_reports_bad_audio(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    run = subprocess.run([sys.executable, "-m", "engine", "vc", "--profile", "tiny", "--source", str(tmp_path / "empty.wav"),
                          "--voice", str(tmp_path / "empty.wav"), "--out", str(tmp_path / "o.wav")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and "error:" in run.stderr and "empty" in run.stderr and "Traceback" not in run.stderr
