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


def utterances(seg: VadSegmenter, audio: np.ndarray, chunk: int = 800, sample_rate: int = SR) -> list:
    found = []
    for i in range(0, audio.size, chunk):
        found += seg.feed(audio[i : i + chunk], sample_rate)
    return found + seg.flush()


def test_long_speech_in_loud_noise_is_not_cut():
    """Speech must not raise the noise floor: 12 s of continuous voicing stays one utterance."""
    rng = np.random.default_rng(1)
    for noise, tolerance in [(0.005, 0.06), (0.02, 0.15)]:
        audio = np.concatenate([np.zeros(8000), voiced(12.0, seed=4), np.zeros(16000)]).astype(np.float32)
        audio += noise * rng.standard_normal(audio.size).astype(np.float32)
        found = utterances(VadSegmenter(aggressiveness=2, pause_ms=700), audio)
        assert len(found) == 1, [(u.start / SR, u.end / SR) for u in found]
        assert abs(found[0].start / SR - 0.5) <= 0.06
        assert abs(found[0].end / SR - 12.5) <= tolerance


def test_max_utterance_length_splits():
    audio = np.concatenate([np.zeros(8000), voiced(7.0, seed=5), np.zeros(16000)]).astype(np.float32)
    audio += 0.003 * np.random.default_rng(2).standard_normal(audio.size).astype(np.float32)
    found = utterances(VadSegmenter(pause_ms=500, max_seconds=3.0), audio)
    assert len(found) >= 3
    assert all(u.audio.size <= 3.0 * SR + 480 for u in found)
    assert abs(sum(u.end - u.start for u in found) / SR - 7.0) < 0.3  # nothing in between is lost


def test_muted_lead_in_and_browser_rate_chunks():
    """A browser stream: 48 kHz float chunks of 0.5 s, starting with exact zeros (muted input)."""
    audio, truth = speech_bursts()
    audio[: SR // 10] = 0.0  # the first 100 ms of a fresh microphone stream are often exact zeros
    audio48 = np.interp(np.arange(0, audio.size, 1 / 3), np.arange(audio.size), audio).astype(np.float32)
    found = utterances(VadSegmenter(aggressiveness=3, pause_ms=600, start_frames=2), audio48, chunk=24000, sample_rate=48000)
    assert len(found) == len(truth)
    for u, (start, end) in zip(found, truth):
        assert abs(u.start / SR - start) <= 0.06 and abs(u.end / SR - end) <= 0.06, (u.start / SR, u.end / SR, start, end)


def test_pause_length_decides_turns_and_config():
    """Two bursts 0.4 s apart: one turn with a 700 ms pause setting, two with 300 ms."""
    gap = np.zeros(int(0.4 * SR), np.float32)
    audio = np.concatenate([np.zeros(8000), voiced(0.8, seed=6), gap, voiced(0.8, seed=7), np.zeros(16000)]).astype(np.float32)
    audio += 0.003 * np.random.default_rng(3).standard_normal(audio.size).astype(np.float32)
    assert len(utterances(VadSegmenter(pause_ms=700), audio)) == 1
    assert len(utterances(VadSegmenter(pause_ms=300), audio)) == 2

    class Server:  # the config section's fields
        vad_aggressiveness = 1
        vad_pause_ms = 300

    seg = VadSegmenter.from_config(Server())
    assert seg.pause_frames == 10 and len(utterances(seg, audio)) == 2


def test_noise_alone_is_not_speech():
    """Steady background noise (hiss, mains hum, a fan-like rumble) never makes an utterance."""
    rng = np.random.default_rng(4)
    t = np.arange(6 * SR) / SR
    hum = 0.01 * np.sin(2 * np.pi * 50 * t) + 0.005 * np.sin(2 * np.pi * 150 * t)
    rumble = np.convolve(rng.standard_normal(t.size), np.ones(40) / 40, mode="same") * 0.05
    for noise in [0.005 * rng.standard_normal(t.size), hum + 0.002 * rng.standard_normal(t.size), rumble]:
        assert utterances(VadSegmenter(aggressiveness=2), noise.astype(np.float32)) == []
