"""Issue 15, parts 1-2 in the engine: typed text never reaches the file system, audio limits are
checked from the header before decoding, unusable audio and bad settings are refused."""

from __future__ import annotations

import builtins
import math
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.audio import AudioError, UploadedFile, load_audio
from engine.errors import EngineError
from engine.pipeline import GenerationOptions, Transcript
from tests.app_helpers import tiny_engine
from tests.audio_helpers import voiced


@pytest.fixture
def fs_spy(monkeypatch):
    """Records every stat/open/libsndfile call whose argument mentions the marker file name."""
    marker = "secret-marker"
    seen: list[str] = []

    def spy(fn, name):
        def wrapped(*args, **kwargs):
            if args and marker in str(args[0]):
                seen.append(f"{name}({str(args[0])[:60]}...)")
            return fn(*args, **kwargs)

        return wrapped

    for name in ["stat", "lstat", "open", "access", "scandir", "listdir"]:
        monkeypatch.setattr(os, name, spy(getattr(os, name), f"os.{name}"))
    monkeypatch.setattr(builtins, "open", spy(builtins.open, "open"))
    monkeypatch.setattr(sf, "info", spy(sf.info, "sf.info"))
    monkeypatch.setattr(sf, "read", spy(sf.read, "sf.read"))
    return marker, seen


def path_shaped_messages(f: Path) -> list[str]:
    d, name = str(f.parent), f.name
    return [
        str(f), f" {f} ", f"{f}\n", "~/" + name,
        d + "/" + "./" * 600 + name,  # 1.2 k characters: over the UI's old 1024 guard
        d + "/" + "./" * 2100 + name,  # over the engine's old 4096 guard
        d + "/" + "./" * 40000 + name,  # 80 k characters
        "file://" + str(f), str(f).replace("/", "\\"), str(f) + "\x00",
    ]


def test_path_shaped_messages_of_any_length_are_text_and_never_touch_the_file_system(tmp_path, fs_spy):
    marker, seen = fs_spy
    f = tmp_path / f"{marker}.wav"
    sf.write(f, voiced(1.0, seed=4), 16000)  # a real server-side WAV: today it would be heard as the user's speech
    engine = tiny_engine()
    engine.config.pipeline.max_chat_chars = 100_000
    seen.clear()  # from here on: the engine's calls only
    try:
        for message in path_shaped_messages(f):
            if "\x00" in message:
                with pytest.raises(EngineError, match="NUL"):
                    engine.chat(message, "flite-slt")
                continue
            events = engine.chat(message, "flite-slt")
            first = next(events)
            events.close()
            assert isinstance(first, Transcript) and first.text == message  # taken as typed text
            # as a voice it is a (refused) library name; as a source it is refused as text
            with pytest.raises(EngineError, match="voice name"):
                engine.prompt(message)
            with pytest.raises(AudioError, match="not text"):
                engine.convert(message, "flite-slt")
    finally:
        engine.config.pipeline.max_chat_chars = 2000
    assert seen == [], seen


def test_chat_text_is_bounded_and_must_be_valid_unicode():
    engine = tiny_engine()
    limit = engine.config.pipeline.max_chat_chars
    with pytest.raises(EngineError, match=f"limit is {limit}.*max_chat_chars"):
        engine.chat("x" * (limit + 1), "flite-slt")  # refused at once, before any model runs
    with pytest.raises(EngineError, match="surrogate"):
        engine.chat("hello \ud800 there", "flite-slt")
    with pytest.raises(EngineError, match="surrogate"):
        engine.tts("hello \udfff", "flite-slt")


@pytest.mark.parametrize("options, match", [
    (GenerationOptions(guidance_scale=math.nan), "guidance"),
    (GenerationOptions(guidance_scale=math.inf), "guidance"),
    (GenerationOptions(seed=10**30), "seed"),
    (GenerationOptions(seed=-5), "seed"),
    (GenerationOptions(steps=0), "steps"),
    (GenerationOptions(temperature=math.nan), "temperature"),
    (GenerationOptions(top_p=2.0), "top-p"),
    (GenerationOptions(chain="sideways"), "chain"),
])
def test_numeric_settings_are_validated(options, match):
    engine = tiny_engine()
    with pytest.raises(EngineError, match=match):
        engine.tts("Hello.", "flite-slt", options=options)
    with pytest.raises(EngineError, match=match):
        engine.chat("Hello.", "flite-slt", options=options)


def wav_header(n_bytes: int, channels: int = 1, rate: int = 16000, bits: int = 16) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, bits)
    return b"RIFF" + struct.pack("<I", 36 + n_bytes) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", n_bytes)


def rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def test_a_1gb_wav_is_refused_from_its_header_without_decoding(tmp_path, monkeypatch):
    """A sparse 1 GiB WAV (a real header, 1 GiB of 16-bit samples = 9.3 h) is refused by length
    from sf.info alone: decoding is made impossible, and memory grows by less than 20 MB."""
    big = tmp_path / "big.wav"
    size = 2**30
    with open(big, "wb") as fh:
        fh.write(wav_header(size - 44))
        fh.truncate(size)

    def no_decoding(*args, **kwargs):
        raise AssertionError("the audio was decoded")

    monkeypatch.setattr(sf, "read", no_decoding)
    monkeypatch.setattr(sf.SoundFile, "read", no_decoding)
    before = rss()
    with pytest.raises(AudioError, match=r"33554\.\d s long; the limit is 30 s"):
        load_audio(big, max_seconds=30)
    # as an upload: a file over the size limit is refused by its size, not even opened
    with pytest.raises(AudioError, match="1024.0 MB; the limit is 50.0 MB") as err:
        load_audio(UploadedFile(big, 50 * 2**20), max_seconds=30)
    assert str(tmp_path) not in str(err.value)
    with pytest.raises(AudioError, match="the limit is 30 s") as err:  # limit raised: the header still refuses it
        load_audio(UploadedFile(big, 2**31), max_seconds=30)
    assert str(tmp_path) not in str(err.value)
    grown = rss() - before
    assert grown < 20 * 2**20, f"memory grew by {grown / 2**20:.1f} MB"


def test_unusable_audio_is_refused(tmp_path):
    zero = tmp_path / "zero-channels.wav"
    zero.write_bytes(wav_header(3200, channels=0) + bytes(3200))
    with pytest.raises(AudioError):
        load_audio(zero)
    with pytest.raises(AudioError, match="channels"):
        load_audio((16000, np.zeros((1600, 0), np.float32)))
    engine = tiny_engine()
    for clip in [(16000, voiced(0.01)), (16000, np.array([0.5], np.float32)), voiced(0.1).tobytes()]:
        with pytest.raises(AudioError):
            engine.convert(clip, "flite-slt")
        with pytest.raises(AudioError):
            list(engine.chat(clip, "flite-slt"))
    ten_ms = tmp_path / "ten-ms.wav"
    sf.write(ten_ms, voiced(0.01), 16000)
    with pytest.raises(AudioError, match="ms long"):
        engine.convert(ten_ms, "flite-slt")


def test_errors_about_an_uploaded_file_never_name_its_path(tmp_path):
    fake = tmp_path / "notes.wav"
    fake.write_text("this is a text file renamed to .wav\n" * 20)
    with pytest.raises(AudioError) as err:
        load_audio(UploadedFile(fake, 2**20))
    message = str(err.value)
    assert "not audio in a format we read" in message and str(tmp_path) not in message and "notes" not in message
