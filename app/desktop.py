"""Desktop mode: the assistant through the local microphone and speakers (sounddevice).

Listens with the VAD segmenter, sends each utterance to ``engine.chat``, prints the transcript and
the reply text as they stream, and plays the reply. The audio streams are injected
(``input_factory`` / ``play``), so tests drive the loop with a scripted source.
"""

from __future__ import annotations

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


def microphone_blocks(input_device: str | None = None, sample_rate: int = 16000) -> Iterator[np.ndarray]:
    """float32 mono blocks from the microphone (blocking generator)."""
    sd = _sounddevice()
    blocks: queue.Queue = queue.Queue()
    try:
        stream = sd.InputStream(samplerate=sample_rate, channels=1, dtype="float32", blocksize=BLOCK, device=_device(input_device),
                                callback=lambda data, frames, t, status: blocks.put(data[:, 0].copy()))
    except Exception as exc:  # PortAudioError, ValueError for unknown devices
        raise AudioDeviceError(f"cannot open the microphone ({exc}); list devices with python launch.py --list-devices") from exc
    with stream:
        while True:
            yield blocks.get()


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
    voice: str | None = None,
    input_device: str | None = None,
    output_device: str | None = None,
    input_factory: Callable[[], Iterable[np.ndarray]] | None = None,
    play: Callable[[np.ndarray, int], None] | None = None,
    out=sys.stdout,
    max_turns: int | None = None,
) -> int:
    """The listen -> chat -> speak loop. Returns 0 when the input ends (or after ``max_turns``)."""
    try:
        blocks = input_factory() if input_factory else microphone_blocks(input_device)
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
    srv = engine.config.server
    segmenter = VadSegmenter(aggressiveness=srv.vad_aggressiveness, pause_ms=srv.vad_pause_ms)
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

    try:
        for block in blocks:
            for utterance in segmenter.feed(block):
                try:
                    handle(utterance)
                except EngineError as exc:
                    print(f"\nerror: {exc}", file=out, flush=True)
                turns += 1
                if max_turns is not None and turns >= max_turns:
                    return 0
        for utterance in segmenter.flush():
            handle(utterance)
    except AudioDeviceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nbye", file=out)
    return 0
