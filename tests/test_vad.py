"""VAD segmentation on generated audio: speech-like bursts separated by pauses, with noise."""

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from app.vad import VadSegmenter
from tests.audio_helpers import voiced

SR = 16000


def speech_bursts(tmp_path=None):
    """[(start_s, end_s)] of speech inside 0.5 s lead-in, 1 s pauses, noise floor ~ -46 dBFS."""
    rng = np.random.default_rng(0)
    segments = []
    if tmp_path is not None and shutil.which("espeak-ng"):
        for i, text in enumerate(["Hello, how are you today?", "Please tell me the weather.", "Thank you very much."]):
            out = tmp_path / f"s{i}.wav"
            subprocess.run(["espeak-ng", "-w", str(out), text], check=True)
            wav, sr = sf.read(out, dtype="float32")
            from engine.audio import resample

            wav = resample(wav, sr, SR)
            nz = np.flatnonzero(np.abs(wav) > 0.01)
            segments.append(0.5 * wav[nz[0] : nz[-1] + 1] / np.abs(wav).max())
    else:
        segments = [voiced(d, f0=f, seed=i) for i, (d, f) in enumerate([(1.2, 120), (0.8, 200), (1.5, 150)])]
    parts, truth, t = [np.zeros(int(0.5 * SR), np.float32)], [], 0.5
    for seg in segments:
        truth.append((t, t + seg.size / SR))
        parts += [seg.astype(np.float32), np.zeros(SR, np.float32)]
        t += seg.size / SR + 1.0
    audio = np.concatenate(parts)
    audio += 0.005 * rng.standard_normal(audio.size).astype(np.float32)
    return audio, truth


@pytest.mark.parametrize("source", ["espeak", "synthetic"])
def test_boundaries_within_60ms(tmp_path, source):
    audio, truth = speech_bursts(tmp_path if source == "espeak" else None)
    seg = VadSegmenter(aggressiveness=3, pause_ms=600, start_frames=2)
    found = []
    for i in range(0, audio.size, 1234):  # odd chunk sizes, as a browser sends
        found += seg.feed(audio[i : i + 1234])
    found += seg.flush()
    assert len(found) == len(truth), [(u.start / SR, u.end / SR) for u in found]
    for u, (start, end) in zip(found, truth):
        assert abs(u.start / SR - start) <= 0.06, (u.start / SR, start)
        assert abs(u.end / SR - end) <= 0.06, (u.end / SR, end)
        assert u.audio.size >= (end - start) * SR * 0.9  # pre-roll + speech kept


def test_other_rates_and_int16_and_short_noise():
    audio, truth = speech_bursts()
    pcm48 = (np.interp(np.arange(0, audio.size, 1 / 3), np.arange(audio.size), audio) * 32767).astype(np.int16)
    seg = VadSegmenter(aggressiveness=3, pause_ms=600, start_frames=2)
    found = seg.feed(pcm48, 48000) + seg.flush()
    assert len(found) == len(truth)
    click = np.zeros(SR, np.float32)
    click[8000:8100] = 0.8
    assert VadSegmenter(min_speech_ms=250).feed(click) == []
    with pytest.raises(ValueError):
        VadSegmenter(aggressiveness=5)
