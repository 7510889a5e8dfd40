"""Phoneme targets for the demo codec: espeak-ng IPA of each corpus transcript, as symbol ids.

The codec's RVQ-1 should carry the words and nothing else. Distilling it towards Whisper features
(cosine) leaves a lot of voice in it and not enough content (docs/demo.md, codec v1), so codec v2
adds a CTC head that reads the phonemes of the utterance off RVQ-1, frame by frame, through one
linear layer: each RVQ-1 code is pushed towards one phoneme. The same head, applied to held-out
audio, is the codec's phoneme-error probe.

Symbols are the IPA characters espeak-ng writes, without stress marks, spaces or punctuation
(``"kˈiːp ðə"`` -> ``k i ː p ð ə``). The inventory is stored in the codec's ``config.json``
(``phonemes``), so the probe decodes with the symbols it was trained on. Transcripts are phonemized
once per corpus and cached in ``CORPUS/phonemes/espeak-en-us.jsonl`` (id -> IPA).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterable, Sequence

log = logging.getLogger(__name__)

_DROP = set("ˈˌ,.;:!?-'\"()")  # stress marks and punctuation carry no frame of their own
BLANK = 0  # CTC blank id; symbol i of the inventory has id i + 1


def ipa_symbols(ipa: str) -> list[str]:
    """The phoneme symbols of an espeak-ng IPA string (one per character, see the module docstring)."""
    return [ch for ch in ipa if not ch.isspace() and ch not in _DROP]


def build_inventory(ipas: Iterable[str]) -> list[str]:
    """Sorted symbol inventory of some IPA strings."""
    return sorted({s for ipa in ipas for s in ipa_symbols(ipa)})


def encode_ipa(ipa: str, inventory: Sequence[str]) -> list[int]:
    """Symbol ids (1-based; 0 is the CTC blank) of ``ipa``; symbols outside ``inventory`` are skipped."""
    index = {s: i + 1 for i, s in enumerate(inventory)}
    return [index[s] for s in ipa_symbols(ipa) if s in index]


def ctc_greedy(ids: Sequence[int]) -> list[int]:
    """Best-path CTC decoding of per-frame argmax ids: merge repeats, drop blanks."""
    out, prev = [], None
    for i in ids:
        if i != prev and i != BLANK:
            out.append(int(i))
        prev = i
    return out


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance between two sequences."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


def phoneme_cache_path(corpus: str | Path, voice: str = "en-us") -> Path:
    return Path(corpus) / "phonemes" / f"espeak-{voice}.jsonl"


def ensure_phonemes(corpus: str | Path, texts: dict[str, str], voice: str = "en-us") -> dict[str, str]:
    """IPA of every ``id -> text``, phonemized once with espeak-ng and cached beside the corpus
    (a corpus that grows costs only its new utterances)."""
    from engine.jsonl import read_jsonl
    from engine.semantic.frontend import TextFrontEnd

    path = phoneme_cache_path(corpus, voice)
    cached: dict[str, str] = {}
    if path.is_file():
        for _, row in read_jsonl(path):
            cached[str(row["id"])] = str(row["ipa"])
    missing = [uid for uid in texts if uid not in cached]
    if missing:
        log.info("phonemizing %d transcripts with espeak-ng (%s)", len(missing), voice)
        ipas = TextFrontEnd("phonemes", voice).convert_many([texts[uid] for uid in missing])
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            for uid, ipa in zip(missing, ipas):
                f.write(json.dumps({"id": uid, "ipa": ipa}, ensure_ascii=False) + "\n")
                cached[uid] = ipa
    return {uid: cached[uid] for uid in texts}
