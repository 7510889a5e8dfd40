"""Self-training data for the semantic model: its own best-of-N speech for training sentences.

For sentences of a demo corpus's train split (never a held-out voice or sentence), the semantic model
samples N unit sequences per sentence in one batch (as TTS does in the demo profile) and the codec's
phoneme head picks the one that says the text best (engine.semantic.selection). Each pick becomes a TTS
record of ``train-llm`` data (the same prompt family and text front end as the model's own records), so
that a fine-tune on them, mixed with the original records, teaches the model to say at once what it said
best in N tries (rejection-sampling fine-tuning). Resumable: sentences already in ``--out`` are kept.

    .venv/bin/python scripts/best_of_n_data.py --profile demo --corpus data/demo_corpus --sentences 600 --candidates 16 --out runs/llm_rft/picks.jsonl \
        --mix-with runs/llm_rft/data-phonemes.jsonl --mix-out runs/llm_rft/mixed.jsonl

(``--mix-with``: the picks, each ``--mix-repeat`` times, and ``--mix-original`` records of that
``train-llm build-data`` file, shuffled into ``--mix-out``: what ``train-llm run --data`` reads.)
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--corpus", required=True, help="a demo corpus folder (its train split's sentences are read)")
    parser.add_argument("--sentences", type=int, default=900, help="distinct training sentences to speak")
    parser.add_argument("--candidates", type=int, default=16)
    parser.add_argument("--max-chars", type=int, default=100, help="only sentences of at most this many characters (16 samples of a long one take long)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True, help="JSONL of train-llm TTS records (resumable)")
    parser.add_argument("--mix-with", metavar="DATA", help="train-llm data (build-data) to mix the picks into: writes --mix-out")
    parser.add_argument("--mix-out", metavar="FILE", help="the mixed data: the picks --mix-repeat times and --mix-original of DATA's records")
    parser.add_argument("--mix-repeat", type=int, default=2)
    parser.add_argument("--mix-original", type=int, default=3600, help="records drawn from DATA (TTS and ASR as they come; 0: all)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    if args.candidates < 2:
        parser.error("--candidates must be at least 2 (a pick needs a choice)")

    from engine.config import load_config
    from engine.pipeline import Engine
    from engine.semantic.selection import PhonemeSelector
    from engine.textfront import normalize_text
    from engine.train.extract import corpus_manifest_path, read_corpus_rows, select_split

    rows, _ = select_split(read_corpus_rows(corpus_manifest_path(args.corpus)), "train")
    texts = sorted({normalize_text(str(r["text"])) for r in rows if r.get("text")})
    texts = [t for t in texts if t and len(t) <= args.max_chars]
    random.Random(args.seed).shuffle(texts)
    texts = texts[: args.sentences]

    engine = Engine(load_config(args.profile, overrides=[f"pipeline.cpu_threads={args.threads}", *args.overrides]))
    model = engine.semantic_for("tts")
    selector = PhonemeSelector.for_codec(engine.codec)
    family, frontend = model.family, model.frontend
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {json.loads(line)["text"] for line in out.read_text().splitlines()} if out.is_file() else set()
    rng = random.Random(f"{args.seed}-instructions")
    start, made = time.perf_counter(), 0
    with out.open("a") as f:
        for n, text in enumerate(texts):
            instruction = rng.randrange(len(family.instructions_tts))  # drawn for every sentence: resuming keeps the draws
            if text in done:
                continue
            sampling = replace(model.cfg.sampling, seed=args.seed * 1_000_003 + n * args.candidates)
            samples = model.speak_candidates(text, sampling, args.candidates)
            scores = selector.scores(text, samples)
            best = selector.pick(scores)
            units = samples[best]
            if not units:
                continue
            model_text = frontend(text) if frontend else text
            f.write(json.dumps({"task": "tts", "id": f"pick-{n}", "prompt": family.tts_prompt(model_text, instruction),
                                "response": family.tts_response(units), "text_units": getattr(frontend, "text_units", "chars"),
                                "codec": engine.codec.name, "text": text, "score": scores[best],
                                "score_median": sorted(scores)[len(scores) // 2]}) + "\n")
            f.flush()
            made += 1
            if made % 25 == 0:
                rate = (time.perf_counter() - start) / made
                print(f"[{n + 1}/{len(texts)}] {made} picks, {rate:.2f} s each", flush=True)
    print(f"{made} new picks in {time.perf_counter() - start:.0f} s -> {out}")
    if args.mix_with:
        print(mix(out, Path(args.mix_with), Path(args.mix_out or out.with_name("mixed.jsonl")), args.mix_repeat, args.mix_original, args.seed))
    return 0


def mix(picks: Path, data: Path, out: Path, repeat: int, original: int, seed: int) -> str:
    """The picks (each ``repeat`` times, one id per pick) and ``original`` records of ``data``, shuffled."""
    keep = ("task", "id", "prompt", "response", "text_units", "codec")
    chosen = [json.loads(line) for line in picks.read_text().splitlines()]
    records = [{**{k: r[k] for k in keep}, "id": f"pick{i}"} for i, r in enumerate(chosen) for _ in range(repeat)]  # copies: one split side
    base = [json.loads(line) for line in data.read_text().splitlines() if line.strip()]
    rng = random.Random(seed)
    if chosen and base and (chosen[0]["text_units"], chosen[0]["codec"]) != (base[0].get("text_units"), base[0].get("codec")):
        raise SystemExit(f"{data} is {base[0].get('text_units')} text on codec {base[0].get('codec')}; the picks are "
                         f"{chosen[0]['text_units']} on {chosen[0]['codec']}")
    drawn = rng.sample(base, min(original, len(base))) if original > 0 else base
    records += drawn
    rng.shuffle(records)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return f"{out}: {len(chosen)} picks x {repeat} + {len(drawn)} records of {data}"


if __name__ == "__main__":
    raise SystemExit(main())
