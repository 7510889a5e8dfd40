"""Desktop mode: the assistant through the local microphone and speakers (sounddevice).

Listens with the VAD segmenter, sends each utterance to ``engine.chat``, prints the transcript and
the reply text as they stream, and plays the reply. The audio streams are injected
(``input_factory`` / ``play``), so tests drive the loop with a scripted source.
"""

from __future__ import annotations

import os
import queue
import sys
from typing import Callable, Iterable, Iterator

import numpy as np

from app.vad import VadSegmenter
from engine.errors import EngineError
from engine.pipeline import ChatDone, TextDelta, Transcript

BLOCK = 480  # 30 ms at 16 kHz


class AudioDeviceError(EngineError):
    """No usable audio device or PortAudio library."""


def _sounddevice():
    try:
        import sounddevice as sd
    except OSError as exc:  # raised at import when the PortAudio library is missing
        raise AudioDeviceError(
            f"PortAudio is not available ({exc}). Install it (Debian/Ubuntu: apt-get install libportaudio2; "
            "macOS: brew install portaudio) or use the web UI: python launch.py"
        ) from exc
    return sd


def list_devices() -> str:
    sd = _sounddevice()
    devices = sd.query_devices()
    if not len(devices):
        return "no audio devices found"
    return str(devices)


def _device(value: str | None):
    if value is None:
        return None
    return int(value) if value.isdigit() else value


class Microphone:
    """float32 mono 16 kHz blocks from the microphone (iterate to read; blocks until audio comes).

    ``drain()`` throws away what was captured meanwhile: called after each reply so the assistant
    does not hear its own voice from the speakers (half-duplex)."""

    def __init__(self, input_device: str | None = None, sample_rate: int = 16000):
        sd = _sounddevice()
        self._blocks: queue.Queue = queue.Queue()
        try:
            self._stream = sd.InputStream(samplerate=sample_rate, channels=1, dtype="float32", blocksize=BLOCK,
                                          device=_device(input_device), callback=self._callback)
        except Exception as exc:  # PortAudioError, ValueError for unknown devices
            raise AudioDeviceError(f"cannot open the microphone ({exc}); list devices with python launch.py --list-devices") from exc

    def _callback(self, data, frames, time_info, status) -> None:
        self._blocks.put(data[:, 0].copy())

    def drain(self) -> None:
        while True:
            try:
                self._blocks.get_nowait()
            except queue.Empty:
                return

    def __iter__(self) -> Iterator[np.ndarray]:
        with self._stream:
            while True:
                yield self._blocks.get()


def speaker(output_device: str | None = None) -> Callable[[np.ndarray, int], None]:
    sd = _sounddevice()

    def play(wav: np.ndarray, sample_rate: int) -> None:
        try:
            sd.play(wav, sample_rate, device=_device(output_device), blocking=True)
        except Exception as exc:
            raise AudioDeviceError(f"cannot play audio ({exc}); list devices with python launch.py --list-devices") from exc

    return play


def run_desktop(
    engine,
    voice: str | os.PathLike | None = None,  # a library name, or an audio file (a Path, from the command line)
    input_device: str | None = None,
    output_device: str | None = None,
    input_factory: Callable[[], Iterable[np.ndarray]] | None = None,
    play: Callable[[np.ndarray, int], None] | None = None,
    out=sys.stdout,
    max_turns: int | None = None,
) -> int:
    """The listen -> chat -> speak loop. Returns 0 when the input ends (or after ``max_turns``)."""
    try:
        blocks = input_factory() if input_factory else Microphone(input_device)
        play = play or speaker(output_device)
    except AudioDeviceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if voice is None:
        names = engine.voices.names()
        if not names:
            print("error: no voice given and the voice library is empty; pass --voice FILE", file=sys.stderr)
            return 1
        voice = names[0]
    segmenter = VadSegmenter.from_config(engine.config.server)
    drain = getattr(blocks, "drain", None)
    conversation = engine.new_conversation()
    turns = 0
    print(f"Listening (voice: {voice}). Speak; pause to send. Ctrl+C to quit.", file=out, flush=True)

    def handle(utterance) -> None:
        print("…", file=out, flush=True)
        for event in engine.chat((16000, utterance.audio), voice, conversation):
            if isinstance(event, Transcript):
                print(f"you: {event.text}", file=out, flush=True)
                print("assistant: ", end="", file=out, flush=True)
            elif isinstance(event, TextDelta):
                print(event.text, end="", file=out, flush=True)
            elif isinstance(event, ChatDone):
                print(f"\n({event.metrics.summary()})", file=out, flush=True)
                if event.wav.size:
                    play(event.wav, event.sample_rate)

    def turn(utterance) -> None:
        try:
            handle(utterance)
        except AudioDeviceError:
            raise
        except EngineError as exc:
            print(f"\nerror: {exc}", file=out, flush=True)

    try:
        for block in blocks:
            utterances = segmenter.feed(block)
            for utterance in utterances:
                turn(utterance)
                turns += 1
                if max_turns is not None and turns >= max_turns:
                    return 0
            if utterances:
                # what the microphone caught while we were thinking and speaking is not the user's turn
                segmenter.reset()
                if drain is not None:
                    drain()
        for utterance in segmenter.flush():
            turn(utterance)
    except AudioDeviceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nbye", file=out)
    return 0
