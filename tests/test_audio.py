import io

import numpy as np
import pytest
import soundfile as sf

from engine.audio import AudioError, load_audio, save_wav, wav_bytes
from tests.audio_helpers import voiced


def test_stereo_44k_int16_microphone_becomes_16k_mono():
    sr = 44100
    mono = voiced(1.0, sr=sr)
    stereo = np.stack([mono, 0.5 * mono], axis=1)
    pcm = (stereo * 32767).astype(np.int16)
    out = load_audio((sr, pcm))
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(out.size - 16000) <= 2
    # the average of the two channels, resampled: peak close to 0.75 * original peak
    assert np.max(np.abs(out)) == pytest.approx(0.75 * np.max(np.abs(mono)), rel=0.05)


def test_float_microphone_and_channels_first():
    x = voiced(0.5, sr=48000)
    out = load_audio((48000, np.stack([x, x])))  # [C, S]
    assert abs(out.size - 8000) <= 2


@pytest.mark.parametrize("fmt,ext", [("WAV", "wav"), ("FLAC", "flac"), ("OGG", "ogg")])
def test_files_and_bytes(tmp_path, fmt, ext):
    x = voiced(0.7, sr=22050)
    path = tmp_path / f"a.{ext}"
    sf.write(path, x, 22050, format=fmt)
    before = path.read_bytes()
    out = load_audio(path)
    assert abs(out.size - round(0.7 * 16000)) <= 2
    assert path.read_bytes() == before  # the user's file is untouched
    assert load_audio(before).size == out.size


def test_mp3_where_supported(tmp_path):
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile cannot write MP3")
    path = tmp_path / "a.mp3"
    sf.write(path, voiced(1.0), 16000, format="MP3")
    assert abs(load_audio(path).size - 16000) < 2000  # MP3 adds encoder padding


def test_errors(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        load_audio(empty)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00garbage" * 10)
    with pytest.raises(AudioError, match="could not read"):
        load_audio(corrupt)
    with pytest.raises(AudioError, match="not found"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(AudioError, match="empty"):
        load_audio(b"")
    with pytest.raises(AudioError, match="zero length"):
        load_audio((16000, np.zeros(0, dtype=np.int16)))
    with pytest.raises(AudioError, match="silent"):
        load_audio((16000, np.zeros(16000, dtype=np.int16)))
    bad = voiced(0.5)
    bad[100] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        load_audio(bad)
    bad[100] = np.inf
    with pytest.raises(AudioError, match="NaN or infinite"):
        load_audio(bad)
    with pytest.raises(AudioError, match="sample rate"):
        load_audio((10, voiced(0.5)))
    with pytest.raises(AudioError, match="sample rate"):
        load_audio((10_000_000, voiced(0.5)))
    with pytest.raises(AudioError, match="limit is 2 s"):
        load_audio(voiced(3.0), max_seconds=2)
    with pytest.raises(AudioError, match="unsupported"):
        load_audio(12345)  # type: ignore[arg-type]


def test_error_is_engine_error_and_value_error():
    from engine.errors import EngineError

    with pytest.raises(EngineError):
        load_audio(b"")
    with pytest.raises(ValueError):
        load_audio(b"")


def test_save_wav_roundtrip(tmp_path):
    x = voiced(0.5)
    path = save_wav(tmp_path / "sub" / "o.wav", x)
    data, sr = sf.read(path)
    assert sr == 16000 and data.shape == x.shape
    assert np.max(np.abs(data - x)) < 1e-3
    assert sf.read(io.BytesIO(wav_bytes(x)))[0].shape == x.shape
