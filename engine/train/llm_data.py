"""Instruction data for the semantic LLM (paper 3.2), built with the codec.

* cross-modal instructions from (audio, transcript) pairs, both directions:
  text -> speech units (TTS) and speech units -> text (ASR), with a pool of phrasings;
* chain-of-modality turns from (question audio, answer text, answer audio) triples:
  ``[Human]: <speech> <eoh>. [SpeechGPT]: {transcript}; [ta] {answer}; [ua] <speech><eoa>``.
Records are ``{"prompt", "response", "task"}`` with ``prompt + response`` the exact training text
(the prompt ends at the speaker tag's colon); the loss covers the response only. Deterministic for a seed.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Iterator

from engine.audio import load_audio
from engine.codec import Codec
from engine.semantic.prompts import PromptFamily


def read_records(path: str | Path) -> list[dict]:
    """JSONL, or TSV ``audio<TAB>text`` (pairs) / ``question<TAB>answer_text<TAB>answer_audio[<TAB>question_text]``."""
    path = Path(path)
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if path.suffix == ".jsonl":
            rows.append(json.loads(line))
        else:
            parts = line.split("\t")
            if len(parts) == 2:
                rows.append({"audio": parts[0], "text": parts[1]})
            else:
                rows.append({"question_audio": parts[0], "answer_text": parts[1], "answer_audio": parts[2], "question_text": parts[3] if len(parts) > 3 else None})
    base = path.parent
    for row in rows:
        for key in ("audio", "question_audio", "answer_audio"):
            if row.get(key) and not Path(row[key]).is_absolute():
                row[key] = str(base / row[key])
    return rows


def units_of(codec: Codec, audio: str) -> list[int]:
    """RVQ-1 ids (50 Hz) of an audio file."""
    return codec.encode(load_audio(audio)).semantic_tokens.tolist()


def cross_modal(family: PromptFamily, codec: Codec, pairs: list[dict], rng: random.Random) -> Iterator[dict]:
    """Both directions for each (audio, transcript) pair, each with a phrasing drawn from the pool."""
    for row in pairs:
        units = units_of(codec, row["audio"])
        text = " ".join(str(row["text"]).split())
        if not text or not units:
            raise ValueError(f"{row['audio']}: empty transcript or audio")
        i = rng.randrange(len(family.instructions_tts))
        yield {"task": "tts", "prompt": family.tts_prompt(text, i), "response": family.tts_response(units)}
        j = rng.randrange(len(family.instructions_asr))
        yield {"task": "asr", "prompt": family.asr_prompt(units, j), "response": family.asr_response(text)}


def chain_of_modality(family: PromptFamily, codec: Codec, triples: list[dict], asr=None) -> Iterator[dict]:
    """One spoken question -> transcript, text answer, spoken answer record per triple."""
    for row in triples:
        question = units_of(codec, row["question_audio"])
        answer = units_of(codec, row["answer_audio"])
        transcript = row.get("question_text") or (asr(row["question_audio"]) if asr else "")
        if not transcript:
            raise ValueError(f"no transcript for {row['question_audio']}: give question_text")
        message = family.user_message(None, question)
        response = family.reply(" ".join(transcript.split()), " ".join(str(row["answer_text"]).split()), answer, spoken=True)
        yield {"task": "chain_of_modality", "prompt": family.chat_prompt([], message), "response": response}


def build_data(family: PromptFamily, codec: Codec, out: str | Path, pairs: str | None = None, triples: str | None = None, seed: int = 0) -> dict:
    """Write ``out`` (JSONL, shuffled with ``seed``); returns counts per task."""
    rng = random.Random(seed)
    records: list[dict] = []
    if pairs:
        records += list(cross_modal(family, codec, read_records(pairs), rng))
    if triples:
        records += list(chain_of_modality(family, codec, read_records(triples)))
    if not records:
        raise ValueError("nothing to build: give --pairs and/or --triples")
    rng.shuffle(records)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    tmp.replace(out)
    counts: dict[str, int] = {}
    for r in records:
        counts[r["task"]] = counts.get(r["task"], 0) + 1
    return counts
