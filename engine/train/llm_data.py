"""Instruction data for the semantic LLM (paper 3.2), built with the codec.

* cross-modal instructions from (audio, transcript) pairs, both directions:
  text -> speech units (TTS) and speech units -> text (ASR), with a pool of phrasings;
* chain-of-modality turns from (question audio, answer text, answer audio) triples:
  ``[Human]: <speech> <eoh>. [SpeechGPT]: {transcript}; [ta] {answer}; [ua] <speech><eoa>``.
* the same cross-modal instructions straight from an extraction folder (``python -m engine extract``:
  RVQ-1 is row 0 of each utterance's codes, so no audio is re-encoded), with the TTS input text
  written by a ``TextFrontEnd`` (characters or espeak-ng phonemes) and held-out rows kept out.
Records are ``{"prompt", "response", "task"}`` with ``prompt + response`` the exact training text
(the prompt ends at the speaker tag's colon); the loss covers the response only. Deterministic for a seed.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Iterator

import logging

from engine.audio import load_audio
from engine.codec import Codec
from engine.semantic.frontend import TextFrontEnd
from engine.semantic.prompts import PromptFamily

log = logging.getLogger(__name__)


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
    return write_records(records, out)


def write_records(records: list[dict], out: str | Path) -> dict:
    """Write ``records`` to the JSONL ``out`` atomically; returns counts per task."""
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


def find_corpus_manifest(codes_dir: str | Path) -> Path | None:
    """The demo-corpus manifest an extraction was made from: ``CORPUS/manifest.jsonl`` beside the
    voice folders its index's ``source`` paths name (None when the sources are not in a demo corpus)."""
    from engine.train.codes_data import read_index
    from engine.train.extract import CORPUS_MANIFEST

    for entry in read_index(codes_dir)[:1]:
        if entry.source:
            for parent in list(Path(entry.source).parents)[:3]:
                if (parent / CORPUS_MANIFEST).is_file():
                    return parent / CORPUS_MANIFEST
    return None


def codes_records(family: PromptFamily, codes_dir: str | Path, frontend: TextFrontEnd, manifest: str | Path | None = None,
                  seed: int = 0) -> tuple[list[dict], dict]:
    """TTS and ASR records for every utterance of an extraction folder, and a report of what was
    kept and skipped.

    With a demo-corpus ``manifest`` (given, or found from the index's source paths) only rows the
    corpus's ``train`` selection keeps can enter (``select_split``: never a held-out voice or
    sentence, whatever a row says); an utterance the manifest does not know is skipped too. TTS
    prompts carry ``frontend(text)``; ASR responses the written text. Each record also names its
    utterance (``id``), the text representation (``text_units``) and the codec."""
    from engine.train.codes_data import CodesDataset, read_meta
    from engine.train.extract import read_corpus_rows, select_split

    dataset = CodesDataset(codes_dir)
    codec = read_meta(codes_dir).get("codec")
    manifest = Path(manifest) if manifest is not None else find_corpus_manifest(codes_dir)
    allowed: set[str] | None = None
    if manifest is not None:
        kept, _ = select_split(read_corpus_rows(manifest), "train")
        allowed = {str(r["id"]) for r in kept}
    else:
        log.warning("%s: no demo-corpus manifest found for its sources, so the split of its rows cannot be checked; "
                    "pass --manifest CORPUS when the codes come from a demo corpus", codes_dir)
    report = {"utterances": len(dataset), "kept": 0, "not_train": 0, "no_text": 0, "manifest": str(manifest) if manifest else None}
    entries = []
    for i, e in enumerate(dataset.entries):
        if allowed is not None and e.id not in allowed:
            report["not_train"] += 1
            continue
        text = " ".join(str(e.text or "").split())
        if not text:
            report["no_text"] += 1
            continue
        entries.append((i, e, text))
    if report["not_train"]:
        log.warning("%d utterance(s) of %s are not in the train split of %s (held out, or unknown to it): left out",
                    report["not_train"], codes_dir, manifest)
    model_texts = frontend.convert_many([text for _, _, text in entries])
    rng = random.Random(seed)
    records = []
    common = {"text_units": frontend.text_units, "codec": codec}
    for (i, e, text), model_text in zip(entries, model_texts):
        units = dataset[i][0].tolist()  # RVQ-1
        ti = rng.randrange(len(family.instructions_tts))
        records.append({"task": "tts", "id": e.id, "prompt": family.tts_prompt(model_text, ti), "response": family.tts_response(units), **common})
        ai = rng.randrange(len(family.instructions_asr))
        records.append({"task": "asr", "id": e.id, "prompt": family.asr_prompt(units, ai), "response": family.asr_response(text), **common})
    report["kept"] = len(entries)
    rng.shuffle(records)
    return records, report
