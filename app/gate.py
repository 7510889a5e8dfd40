"""One limit on how many requests run on the models at once, shared by the web UI and the HTTP API."""

from __future__ import annotations

import threading
from typing import Any, Iterator


class GatedEngine:
    """The Engine, with its tasks (tts, stream_tts, convert, chat, transcribe, load) waiting for one of
    ``concurrency`` slots; every other attribute (config, voices, codec, semantic, status, ...) is the
    engine's own. ``gate`` is the semaphore itself, for callers that run the models directly."""

    def __init__(self, engine: Any, concurrency: int = 1):
        self.engine = engine
        self.concurrency = max(1, int(concurrency))
        self.gate = threading.BoundedSemaphore(self.concurrency)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def tts(self, *args: Any, **kwargs: Any):
        """``Engine.tts`` once a slot is free."""
        with self.gate:
            return self.engine.tts(*args, **kwargs)

    def convert(self, *args: Any, **kwargs: Any):
        """``Engine.convert`` once a slot is free."""
        with self.gate:
            return self.engine.convert(*args, **kwargs)

    def transcribe(self, *args: Any, **kwargs: Any) -> str:
        """``Engine.transcribe`` once a slot is free."""
        with self.gate:
            return self.engine.transcribe(*args, **kwargs)

    def load(self, *args: Any, **kwargs: Any) -> None:
        """``Engine.load`` once a slot is free."""
        with self.gate:
            return self.engine.load(*args, **kwargs)

    def chat(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        """``Engine.chat``: its inputs are checked now, as the engine's own call does (a bad message
        or voice raises here, without taking a slot); the slot is taken at the first event and held
        until the turn's last one (or the caller stops early)."""
        return self._gated(self.engine.chat(*args, **kwargs))

    def stream_tts(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        """``Engine.stream_tts``, gated as ``chat``: inputs checked now, the slot held from the first
        piece to the result."""
        return self._gated(self.engine.stream_tts(*args, **kwargs))

    def _gated(self, events: Iterator[Any]) -> Iterator[Any]:
        with self.gate:
            yield from events
