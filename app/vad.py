"""Hands-free talking: split a stream of microphone audio into utterances with WebRTC VAD.

Audio arrives in chunks of any size and rate; it is resampled to 16 kHz and judged in 30 ms
frames. An utterance starts after ``start_frames`` voiced frames (with ``preroll_ms`` of audio kept
from before), and ends after ``pause_ms`` of silence, or when it reaches ``max_seconds``.
Utterances shorter than ``min_speech_ms`` of voiced audio are dropped (coughs, clicks).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from engine.audio import SAMPLE_RATE

FRAME_MS = 30
FRAME = SAMPLE_RATE * FRAME_MS // 1000  # 480 samples
FLOOR_WINDOW = 66  # frames (~2 s) of idle audio the noise floor is estimated from
FLOOR_PERCENTILE = 20
GATE = 4.0  # a speech frame is at least 12 dB above the noise floor
MIN_LEVEL = 10 ** (-60 / 20)  # and above -60 dBFS
UNKNOWN_ROOM_LEVEL = 10 ** (-40 / 20)  # ... or -40 dBFS while the room noise is still unknown
MIN_ROOM_FRAMES = 10  # non-muted idle frames needed before muted ones are left out of the floor
DIGITAL_SILENCE = 1e-5  # -100 dBFS: the lowest floor (muted input, noise-suppressed microphones)


@dataclass
class Utterance:
    audio: np.ndarray  # float32 16 kHz, pre-roll included
    start: int  # sample index (16 kHz, since the segmenter started) of the first voiced frame
    end: int  # sample index just after the last voiced frame


class VadSegmenter:
    def __init__(self, aggressiveness: int = 2, pause_ms: int = 700, preroll_ms: int = 300, min_speech_ms: int = 250,
                 max_seconds: float = 30.0, start_frames: int = 3):
        import webrtcvad

        if not 0 <= aggressiveness <= 3:
            raise ValueError("VAD aggressiveness must be 0..3")
        self.vad = webrtcvad.Vad(aggressiveness)
        self.pause_frames = max(1, pause_ms // FRAME_MS)
        self.preroll_frames = max(0, preroll_ms // FRAME_MS)
        self.min_voiced_frames = max(1, min_speech_ms // FRAME_MS)
        self.max_frames = int(max_seconds * 1000 / FRAME_MS)
        self.start_frames = start_frames
        self.reset()

    @classmethod
    def from_config(cls, server) -> "VadSegmenter":
        """From the ``server`` config section (``vad_*`` fields; missing ones keep the defaults)."""
        names = {"vad_aggressiveness": "aggressiveness", "vad_pause_ms": "pause_ms", "vad_preroll_ms": "preroll_ms",
                 "vad_min_speech_ms": "min_speech_ms", "vad_max_seconds": "max_seconds"}
        return cls(**{arg: getattr(server, key) for key, arg in names.items() if getattr(server, key, None) is not None})

    def reset(self) -> None:
        self._pending = np.zeros(0, dtype=np.float32)
        self._frame_index = 0
        self._preroll: deque[np.ndarray] = deque(maxlen=self.preroll_frames + self.start_frames)
        self._recent: deque[bool] = deque(maxlen=self.start_frames)
        self._active = False
        self._frames: list[np.ndarray] = []
        self._voiced = 0
        self._silence = 0
        self._start = 0
        self._last_voiced_end = 0
        self._floor: float | None = None
        self._idle_levels: deque[float] = deque(maxlen=FLOOR_WINDOW)
        self._resampler = None
        self._room_known = False

    @property
    def active(self) -> bool:
        """True while an utterance is being collected."""
        return self._active

    def feed(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> list[Utterance]:
        """Add audio (float in [-1, 1] or int16, mono or [S, C]); returns the utterances it completed."""
        x = np.asarray(audio)
        if x.dtype.kind == "i":
            x = x.astype(np.float32) / 32768.0
        x = x.astype(np.float32)
        if x.ndim == 2:
            x = x.mean(axis=1) if x.shape[1] <= 8 else x.mean(axis=0)
        if sample_rate != SAMPLE_RATE and x.size:
            x = self._resample(x, int(sample_rate))
        self._pending = np.concatenate([self._pending, x])
        done: list[Utterance] = []
        while self._pending.size >= FRAME:
            frame, self._pending = self._pending[:FRAME], self._pending[FRAME:]
            u = self._step(frame)
            if u is not None:
                done.append(u)
        return done

    def _resample(self, x: np.ndarray, sample_rate: int) -> np.ndarray:
        """Streaming resampler (one per input rate): no edge clicks between chunks."""
        import soxr

        if self._resampler is None or self._resampler[0] != sample_rate:
            self._resampler = (sample_rate, soxr.ResampleStream(sample_rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ"))
        return self._resampler[1].resample_chunk(np.ascontiguousarray(x, dtype=np.float32))

    def flush(self) -> list[Utterance]:
        """End of stream: the utterance in progress, if long enough."""
        u = self._finish() if self._active else None
        return [u] if u is not None else []

    def _is_speech(self, frame: np.ndarray) -> bool:
        """WebRTC VAD, gated by energy: WebRTC alone fires on steady background noise, so a frame
        must also be 12 dB above the noise floor. The floor is a low percentile of the frame levels
        heard outside utterances over the last ~2 s; inside an utterance it is held, so long or
        loud speech never raises it (which would cut the utterance short)."""
        rms = float(np.sqrt(np.mean(frame**2)) + 1e-7)
        if not self._active:
            self._idle_levels.append(max(rms, DIGITAL_SILENCE))
            levels = np.asarray(self._idle_levels)
            room = levels[levels > DIGITAL_SILENCE]  # muted stretches say nothing about the room noise,
            self._room_known = room.size >= MIN_ROOM_FRAMES  # unless too little else was heard to judge by
            self._floor = float(np.percentile(room if self._room_known else levels, FLOOR_PERCENTILE))
        # until the room has been heard, only clearly audible frames count (the start of room noise
        # after a muted stretch is not speech)
        if rms < max(GATE * (self._floor or 0.0), MIN_LEVEL if self._room_known else UNKNOWN_ROOM_LEVEL):
            return False
        pcm = (np.clip(frame, -1, 1) * 32767).astype(np.int16).tobytes()
        return self.vad.is_speech(pcm, SAMPLE_RATE)

    def _step(self, frame: np.ndarray) -> Utterance | None:
        speech = self._is_speech(frame)
        index = self._frame_index
        self._frame_index += 1
        if not self._active:
            self._preroll.append(frame)
            self._recent.append(speech)
            if len(self._recent) == self.start_frames and all(self._recent):
                self._active = True
                self._frames = list(self._preroll)
                self._voiced = self.start_frames
                self._silence = 0
                # onset: walk back over the pre-roll while frames stay clearly above the noise floor
                first = index - self.start_frames + 1
                frames = list(self._preroll)
                k = len(frames) - self.start_frames - 1
                while k >= 0 and float(np.sqrt(np.mean(frames[k] ** 2))) > 1.4 * (self._floor or 0.0):
                    first -= 1
                    k -= 1
                self._start = first * FRAME
                self._last_voiced_end = (index + 1) * FRAME
                self._preroll.clear()
                self._recent.clear()
            return None
        self._frames.append(frame)
        if speech:
            self._voiced += 1
            self._silence = 0
            self._last_voiced_end = (index + 1) * FRAME
        else:
            self._silence += 1
        if self._silence >= self.pause_frames or len(self._frames) >= self.max_frames:
            return self._finish()
        return None

    def _finish(self) -> Utterance | None:
        audio = np.concatenate(self._frames) if self._frames else np.zeros(0, np.float32)
        keep = self._voiced >= self.min_voiced_frames
        # drop the trailing pause (keep ~100 ms of it)
        tail = max(self._silence - 100 // FRAME_MS, 0) * FRAME
        if tail:
            audio = audio[:-tail]
        result = Utterance(audio, self._start, self._last_voiced_end) if keep else None
        self._active = False
        self._frames = []
        self._voiced = self._silence = 0
        return result
