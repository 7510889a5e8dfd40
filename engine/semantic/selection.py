"""Best-of-N speech units: which of several sampled unit sequences says the text best.

The demo semantic model samples RVQ-1 units; one sample in several skips, slurs or repeats a word.
The demo codec has a phoneme head on RVQ-1 (a linear CTC layer trained with the codec to read the
utterance's espeak-ng phonemes off its units: engine.train.phonemes). ``PhonemeSelector`` scores
each candidate by the CTC loss of the text's phonemes under that head, per phoneme, and picks the
lowest: the candidate whose units carry the text's sounds most plainly. It reads only units and
text (no audio, no ASR model), so it costs milliseconds per candidate. On 45 held-out TTS items the
pick of 8 samples took Whisper tiny.en's WER from 26 % (one sample) to 14.7 % (docs/demo.md, "Best of N").
"""

from __future__ import annotations

import logging
import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.errors import ModelUnavailableError
from engine.semantic.frontend import TextFrontEnd
from engine.semantic.steering import CtcSteering
from engine.train.phonemes import encode_ipa

log = logging.getLogger(__name__)

__all__ = ["PhonemeSelector"]


class PhonemeSelector:
    """Scores unit sequences against a text with a CTC phoneme head (``Codec.phoneme_log_probs``)."""

    def __init__(self, log_probs: Callable[[Tensor], Tensor], symbols: Sequence[str], frontend: TextFrontEnd | None = None):
        """``log_probs``: tokens [B, T] -> CTC log-probabilities [B, T, len(symbols) + 1] (blank 0);
        ``symbols``: the head's phoneme symbols; ``frontend``: text -> espeak-ng IPA (en-us by default)."""
        if not symbols:
            raise ValueError("the phoneme head has no symbols")
        self.log_probs = log_probs
        self.symbols = list(symbols)
        self.frontend = frontend or TextFrontEnd("phonemes", "en-us")
        self._tables: dict[int, Tensor] = {}  # units -> the head's log-probabilities of each unit [U, V]

    @classmethod
    def for_codec(cls, codec) -> "PhonemeSelector":
        """The selector of a codec with a phoneme head (the demo codec); ModelUnavailableError otherwise."""
        symbols = codec.phoneme_symbols
        if not symbols:
            raise ModelUnavailableError(f"best-of-N speech (more than one sample per sentence) reads the units with the codec's phoneme head, "
                                        f"and codec {codec.name!r} has none (only the demo codec does); ask for one sample per sentence "
                                        "(tts --candidates 1, Samples per sentence 1 on the page, semantic.tts_candidates: 1 in the profile)")
        return cls(codec.phoneme_log_probs, symbols)

    def target(self, text: str) -> list[int]:
        """The text's phoneme ids as the head spells them."""
        return encode_ipa(self.frontend(text), self.symbols)

    @torch.inference_mode()
    def scores(self, text: str, candidates: Sequence[Sequence[int]]) -> list[float]:
        """CTC loss per phoneme of ``text`` for each candidate (lower = says it better); inf for a candidate
        too short to hold the phonemes (or empty), nan for all when the text has no phonemes."""
        target = self.target(text)
        if not target:
            return [math.nan] * len(candidates)
        out = []
        for units in candidates:
            if not units:
                out.append(math.inf)
                continue
            lp = self.log_probs(torch.as_tensor([list(units)], dtype=torch.long))[0]  # [T, V]
            loss = F.ctc_loss(lp[:, None], torch.tensor([target]), torch.tensor([lp.shape[0]]), torch.tensor([len(target)]),
                              blank=0, reduction="sum", zero_infinity=False)
            out.append(float(loss) / len(target))
        return out

    def best(self, text: str, candidates: Sequence[Sequence[int]]) -> int:
        """Index of the candidate that says ``text`` best (the first, when none can be scored)."""
        scores = self.scores(text, candidates)
        best = self.pick(scores)
        log.debug("best of %d speech candidates: #%d (CTC loss per phoneme %s)", len(candidates), best, ", ".join(f"{s:.2f}" for s in scores))
        return best

    @torch.inference_mode()
    def steering(self, text: str, token_units: Tensor, rows: int, every: int, sharpness: float = 1.0) -> CtcSteering | None:
        """A guide that steers ``rows`` samples of ``text`` towards its phonemes (engine.semantic.steering);
        ``token_units``: every token id's unit or -1. None when the text has no phonemes to read."""
        target = self.target(text)
        if not target:
            return None
        units = int(token_units.max()) + 1
        if units not in self._tables:
            self._tables[units] = self.log_probs(torch.arange(units)[None])[0].float()  # [U, V]: the head reads each unit alone
        return CtcSteering(self._tables[units], target, token_units, rows, every, sharpness)

    @staticmethod
    def pick(scores: Sequence[float]) -> int:
        """Index of the lowest finite score of ``scores`` (from ``scores``), 0 when none is finite."""
        finite = [(s, i) for i, s in enumerate(scores) if math.isfinite(s)]
        return min(finite)[1] if finite else 0

