"""How much best-of-N speech helps TTS: every candidate of every item heard by Whisper tiny.en.

For each item of a TTS test manifest (held-out sentences, held-out voices' prompts), N unit sequences are
sampled (seeds ``seed`` .. ``seed + N - 1``, one after another, so candidate k is exactly what one sample
with that seed gives), each is synthesised in the item's voice and transcribed by Whisper tiny.en, and
the codec's phoneme head scores it (engine.semantic.selection). The table then gives the corpus WER of
one sample, of the mean over the samples, of the phoneme head's pick among the first k (k = 2, 4, ... N),
and of the pick Whisper itself would make (the oracle: the best any selector could do with those
samples). Resumable: items already in ``--out`` are kept.

    .venv/bin/python scripts/best_of_n.py --profile demo --manifest runs/tts_testset/manifest_rest.jsonl --candidates 8 --out reports/best_of_n.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


class Candidate(NamedTuple):  # a NamedTuple: the docs test loads this file without registering it as a module
    seed: int
    frames: int
    score: float  # the phoneme head's CTC loss per phoneme (lower = says the text better)
    errors: int  # Whisper tiny.en's word errors against the text
    words: int
    heard: str
    units: list = []  # the RVQ-1 units sampled (rows written before this field load without them)
    rescore: float = float("nan")  # the same head's CTC loss per phoneme on the RVQ-1 of the synthesised audio, re-encoded


def wer_table(items: list[list[Candidate]]) -> list[tuple[str, float]]:
    """(selection, corpus WER %) rows for items of candidates."""

    def corpus(pick) -> float:
        errors = sum(pick(c).errors for c in items)
        words = sum(c[0].words for c in items)
        return 100.0 * errors / max(words, 1)

    n = min(len(c) for c in items)
    rows = [("one sample (the first seed)", corpus(lambda c: c[0])),
            (f"mean of {n} samples", 100.0 * sum(sum(x.errors for x in c[:n]) / n for c in items) / max(sum(c[0].words for c in items), 1))]
    for k in sorted({*range(2, n + 1, 2), n}):
        rows.append((f"phoneme head's pick of {k}", corpus(lambda c, k=k: min(c[:k], key=lambda x: x.score))))
    rows.append((f"Whisper's own pick of {n} (oracle)", corpus(lambda c: min(c[:n], key=lambda x: x.errors))))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--manifest", required=True, help="a TTS test manifest (eval build-testset demo --task tts)")
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True, help="JSONL of every candidate (resumable)")
    parser.add_argument("--exclude", action="append", default=[], metavar="MANIFEST",
                        help="skip items whose id is in this manifest (a development set beside a test set)")
    parser.add_argument("--limit", type=int, default=0, help="at most this many items (0: all)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    if args.candidates < 1:
        parser.error("--candidates must be at least 1")

    from engine.config import load_config
    from engine.eval.asr import WhisperASR
    from engine.eval.testsets import read_manifest
    from engine.eval.textnorm import wer_stats
    from engine.pipeline import Engine, GenerationOptions
    from engine.semantic.selection import PhonemeSelector
    from engine.textfront import normalize_text

    engine = Engine(load_config(args.profile, overrides=[f"pipeline.cpu_threads={args.threads}", *args.overrides]))
    model = engine.semantic_for("tts")
    selector = PhonemeSelector.for_codec(engine.codec)
    asr = WhisperASR.load("tiny")
    options = GenerationOptions(seed=args.seed)
    sampling = engine.config.semantic.sampling
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done: dict[str, list[Candidate]] = {}
    if out.is_file():
        for line in out.read_text().splitlines():
            row = json.loads(line)
            done[row["id"]] = [Candidate(*c) for c in row["candidates"]]
    skip = {i.id for m in args.exclude for i in read_manifest(m, "tts")}
    items = [i for i in read_manifest(args.manifest, "tts") if i.id not in skip]
    items = items[: args.limit] if args.limit > 0 else items
    with out.open("a") as f:
        for n, item in enumerate(items, 1):
            if item.id in done and len(done[item.id]) >= args.candidates:
                continue
            text = normalize_text(item.text)
            samples = [model.speak(text, replace(sampling, seed=args.seed + k), candidates=1) for k in range(args.candidates)]
            scores = selector.scores(text, samples)
            cands = []
            for k, (units, score) in enumerate(zip(samples, scores)):
                wav = engine.synthesize_units(units, Path(item.prompt), options=options)  # manifest paths: a trusted caller
                heard = asr.transcribe(wav)
                rescore = selector.scores(text, [engine.codec.encode(wav).semantic_tokens.tolist()])[0]
                st = wer_stats(text, heard)
                cands.append(Candidate(args.seed + k, len(units), score, st.errors, st.reference_words, heard, list(units), rescore))
            done[item.id] = cands
            f.write(json.dumps({"id": item.id, "text": text, "candidates": [list(c) for c in cands]}) + "\n")
            f.flush()
            print(f"[{n}/{len(items)}] {item.id}: errors {[c.errors for c in cands]}, head's pick #{selector.pick(scores)}", flush=True)
    table = wer_table([done[i.id] for i in items if i.id in done])
    print(f"\n{len(done)} items, {args.candidates} samples each (Whisper tiny.en WER against the text)")
    for name, wer in table:
        print(f"  {name:<40s} {wer:5.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
