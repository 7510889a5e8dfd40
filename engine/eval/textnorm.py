"""Text normalisation and word error rate for scoring ASR transcripts of generated speech.

Reference and hypothesis go through the same steps, so formatting never counts as an error:
the TTS front end's ``normalize_text`` spells numbers, money, times and abbreviations
("$3.50" and "three dollars fifty" compare equal), British spellings of common words are
mapped to American ones, then case, punctuation and spacing are removed. The WER itself is
``jiwer``'s word-level edit distance, summed over the corpus (not averaged per sentence),
as in the paper's tables.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from engine.textfront import normalize_text

# Whisper's normaliser maps spellings; these are the ones that actually differ in read speech.
_SPELLING = {
    "colour": "color", "colours": "colors", "favour": "favor", "favourite": "favorite", "honour": "honor",
    "labour": "labor", "neighbour": "neighbor", "neighbours": "neighbors", "behaviour": "behavior",
    "centre": "center", "theatre": "theater", "metre": "meter", "metres": "meters", "grey": "gray",
    "travelled": "traveled", "travelling": "traveling", "realise": "realize", "realised": "realized",
    "organise": "organize", "organised": "organized", "recognise": "recognize", "recognised": "recognized",
    "programme": "program", "defence": "defense", "licence": "license", "practise": "practice",
    "mr": "mister", "mrs": "missus", "dr": "doctor", "st": "saint", "ok": "okay",
}
_FILLERS = {"uh", "um", "hmm", "mm", "mhm", "ah", "er", "eh"}


def normalize_for_wer(text: str) -> str:
    """Lower-case words only: numbers spelled out, punctuation and fillers removed."""
    text = unicodedata.normalize("NFKC", text or "")
    text = re.sub(r"\[[^\]]*\]|\([^)]*\)", " ", text)  # Whisper's "[music]", "(laughs)"
    text = normalize_text(text) if text.strip() else ""
    text = text.lower().replace("’", "'")
    text = re.sub(r"[^a-z0-9' ]+", " ", text.replace("-", " "))
    words = []
    for word in text.split():
        word = word.strip("'")
        if not word or word in _FILLERS:
            continue
        words.append(_SPELLING.get(word, word))
    return " ".join(words)


@dataclass
class WerStats:
    """Word-level edit counts of one or many utterances."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    reference_words: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        """Errors / reference words; an empty reference scores 0 if the hypothesis is empty too, else 1."""
        if self.reference_words == 0:
            return 0.0 if self.errors == 0 else 1.0
        return self.errors / self.reference_words

    def __add__(self, other: "WerStats") -> "WerStats":
        return WerStats(self.substitutions + other.substitutions, self.deletions + other.deletions,
                        self.insertions + other.insertions, self.reference_words + other.reference_words)


def corpus_stats(rows) -> WerStats:
    """Counts of many scored rows (each with ``errors`` and ``reference_words``) added up: their
    ``wer`` is the corpus word error rate, all errors over all reference words."""
    return sum((WerStats(substitutions=r.errors, reference_words=r.reference_words) for r in rows), WerStats())


def wer_stats(reference: str, hypothesis: str) -> WerStats:
    """Edit counts between one reference and one hypothesis, after ``normalize_for_wer`` on both."""
    import jiwer

    ref = normalize_for_wer(reference)
    hyp = normalize_for_wer(hypothesis)
    if not ref:
        return WerStats(insertions=len(hyp.split()))
    if not hyp:
        return WerStats(deletions=len(ref.split()), reference_words=len(ref.split()))
    out = jiwer.process_words(ref, hyp)
    return WerStats(out.substitutions, out.deletions, out.insertions, len(ref.split()))


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER of one utterance (0 = perfect; can exceed 1 when the hypothesis adds words)."""
    return wer_stats(reference, hypothesis).wer
