"""Streamed synthesis of one utterance that arrives in chunks of RVQ-1 units, without seams.

Each chunk *continues* the previous ones instead of being synthesised on its own:

* perceptual model: the voice prompt is extended by the frames already generated for this
  utterance (the last ``context_frames`` of them), so the chunk is generated as a prompt
  continuation: same voice, same prosodic flow. A seeded flow model draws its noise per frame of
  the utterance (``frame_offset``), so a frame gets the same noise streamed or in one pass.
  SoundStorm continues from the generated codes themselves;
  The last ``lookahead_frames`` of each chunk are provisional: the next chunk generates them again
  together with its own frames, so every frame that is kept was generated with right context;
* codec: every decode starts ``overlap_frames`` before the first sample it emits (the decoder's
  convolutions and LSTM warm up on frames already heard) and the last ``holdback_frames`` of the
  utterance so far are held back until the next chunk gives them right context (or the utterance
  ends). The emitted pieces simply concatenate: no cross-fade, no gap, no doubled samples.

The concatenated output equals the pieces the caller streamed, and is the reply's final audio.

``decode_in_pieces`` decodes an utterance generated in one pass in pieces (the first one short, so
that it can play while the rest is decoded), with the same overlap and right context.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from engine.codec import HOP_LENGTH, SAMPLE_RATE, Codec
from engine.perceptual.base import PerceptualModel, Prompt


@dataclass
class StreamSettings:
    context_frames: int = 150  # generated frames fed back as left context (3 s at 50 Hz; + a 3 s voice prompt = 300, the official prompt cap)
    overlap_frames: int = 25  # frames decoded again before each emitted piece (0.5 s of decoder warm-up)
    holdback_frames: int = 4  # frames emitted only once the next chunk (or the end) gives them right context (80 ms)
    lookahead_frames: int = 10  # the last frames of a chunk stay provisional and are generated again with the next chunk (0.2 s)


class UtteranceSynthesizer:
    """Turns unit chunks of one utterance into audio pieces that join seamlessly."""

    def __init__(self, model: PerceptualModel, codec: Codec, prompt: Prompt, settings: StreamSettings | None = None,
                 stage: Callable[[str], AbstractContextManager] | None = None, **generate_kwargs):
        """``generate_kwargs``: what ``model.generate`` takes besides tokens and prompt (steps,
        chain, guidance_scale, seed). ``stage(name)``: a context manager timing the "perceptual"
        and "decode" work (a request clock's ``stage``)."""
        self.model, self.codec, self.prompt = model, codec, prompt
        self.decoder = model.output_decoder(generate_kwargs.get("chain"))  # None: the codec's own
        self.stage = stage or (lambda name: nullcontext())
        self.settings = settings or StreamSettings()
        self.kwargs = generate_kwargs
        self.tokens = torch.zeros(0, dtype=torch.long)  # committed frames
        self.complete = torch.zeros(0, codec.dim)
        self.codes = torch.zeros(codec.n_q, 0, dtype=torch.long) if hasattr(model, "generate_codes") else None
        self.pending = torch.zeros(0, dtype=torch.long)  # provisional frames (generated, to be generated again)
        self.pending_complete = torch.zeros(0, codec.dim)
        self.pending_codes = torch.zeros(codec.n_q, 0, dtype=torch.long)
        self.emitted = 0  # frames whose audio has been handed out

    @property
    def num_frames(self) -> int:
        return int(self.tokens.shape[0])

    def _context(self) -> Prompt:
        n = min(self.num_frames, max(self.settings.context_frames, 0))
        if n == 0:
            return self.prompt
        codes = self.codes[:, -n:] if self.codes is not None else None
        return self.prompt.extended(self.codec, self.tokens[-n:], self.complete[-n:], codes)

    def push(self, units: list[int]) -> np.ndarray:
        """Generate the next chunk as a continuation; returns the audio that is final now."""
        if not units:
            return np.zeros(0, dtype=np.float32)
        tokens = torch.cat([self.pending, torch.as_tensor(units, dtype=torch.long)])
        prompt = self._context()
        codes = None
        with self.stage("perceptual"):
            if self.codes is not None:
                codes = self.model.generate_codes(tokens, prompt, frame_offset=self.num_frames, **self.kwargs).cpu().long()  # type: ignore[attr-defined]
                complete = self.codec.embed(codes)
            else:
                complete = self.model.generate(tokens, prompt, frame_offset=self.num_frames, **self.kwargs)
        keep = max(int(tokens.shape[0]) - max(self.settings.lookahead_frames, 0), 0)
        self._commit(tokens[:keep], complete[:keep], None if codes is None else codes[:, :keep])
        self.pending, self.pending_complete = tokens[keep:], complete[keep:].float().cpu()
        if codes is not None:
            self.pending_codes = codes[:, keep:]
        return self._emit(final=False)

    def finish(self) -> np.ndarray:
        """The provisional and held-back end of the utterance."""
        self._commit(self.pending, self.pending_complete, self.pending_codes if self.codes is not None else None)
        self.pending, self.pending_complete = self.pending[:0], self.pending_complete[:0]
        return self._emit(final=True)

    def _commit(self, tokens: Tensor, complete: Tensor, codes: Tensor | None) -> None:
        self.tokens = torch.cat([self.tokens, tokens])
        self.complete = torch.cat([self.complete, complete.float().cpu()])
        if codes is not None and self.codes is not None:
            self.codes = torch.cat([self.codes, codes], dim=1)

    def _emit(self, final: bool) -> np.ndarray:
        total = self.num_frames
        end = total if final else max(self.emitted, total - max(self.settings.holdback_frames, 0))
        if end <= self.emitted:
            return np.zeros(0, dtype=np.float32)
        start = max(0, self.emitted - max(self.settings.overlap_frames, 0))
        window = torch.cat([self.complete[start:total], self.pending_complete])  # provisional frames: right context only
        with self.stage("decode"):
            wav = self.codec.decode(window, start_frame=start, decoder=self.decoder).numpy()
        a = (self.emitted - start) * HOP_LENGTH
        piece = wav[a : a + (end - self.emitted) * HOP_LENGTH].astype(np.float32)
        self.emitted = end
        return piece


def decode_in_pieces(codec: Codec, complete: Tensor, first_frames: int, settings: StreamSettings | None = None,
                     stage: Callable[[str], AbstractContextManager] | None = None,
                     clock: Callable[[], float] = time.perf_counter, decoder: torch.nn.Module | None = None) -> Iterator[np.ndarray]:
    """The waveform of a complete embedding [T, D] in pieces that concatenate to its one-pass decode
    (windows decode alike but for their edges, which are never emitted): the first ``first_frames``
    as soon as they are decoded (with ``holdback_frames`` of right context), then pieces sized from
    the measured decode speed so that each is ready before the audio handed out so far has played,
    each decoded from ``overlap_frames`` before it. Where decoding is slower than playback the rest
    comes in one piece (fewest repeated frames). ``first_frames`` 0 (or a short T): one piece.
    ``decoder``: the one to decode with (``PerceptualModel.output_decoder``; None: the codec's own)."""
    cfg = settings or StreamSettings()
    stage = stage or (lambda name: nullcontext())
    total = int(complete.shape[0])
    overlap, context = max(cfg.overlap_frames, 0), max(cfg.holdback_frames, 0)

    def piece(begin: int, end: int) -> tuple[np.ndarray, float]:
        """Audio of frames begin..end and the decode's seconds per frame."""
        start, stop = max(0, begin - overlap), min(total, end + context)
        t0 = clock()
        with stage("decode"):
            wav = codec.decode(complete[start:stop], start_frame=start, decoder=decoder).numpy()
        per_frame = (clock() - t0) / max(stop - start, 1)
        return wav[(begin - start) * HOP_LENGTH : (end - start) * HOP_LENGTH].astype(np.float32), per_frame

    if first_frames <= 0 or total <= first_frames + context:
        yield piece(0, total)[0]
        return
    audio, per_frame = piece(0, first_frames)
    started = clock()
    yield audio
    done = first_frames
    while done < total:
        buffered = done * HOP_LENGTH / SAMPLE_RATE - (clock() - started)  # seconds handed out and not yet played
        fits = int(0.8 * buffered / max(per_frame, 1e-9)) - overlap - context  # frames decodable before they run out (20 % margin)
        end = total if fits >= total - done or fits < max(first_frames // 2, 1) else done + fits
        audio, per_frame = piece(done, end)
        yield audio
        done = end


def one_pass(model: PerceptualModel, codec: Codec, prompt: Prompt, units: list[int], **generate_kwargs) -> tuple[np.ndarray, Tensor]:
    """The whole utterance synthesised at once (reference for the streamed result): waveform and
    complete embedding [T, D]."""
    tokens = torch.as_tensor(units, dtype=torch.long)
    complete = model.generate(tokens, prompt, frame_offset=0, **generate_kwargs)
    return codec.decode(complete, decoder=model.output_decoder(generate_kwargs.get("chain"))).numpy().astype(np.float32), complete
