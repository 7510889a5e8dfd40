"""Evaluate zero-shot TTS / voice conversion (WER, speaker similarity), or build a test set.

    python -m engine eval tts --manifest M.jsonl --out DIR [--steps 4,8,16] [--profile ...]
    python -m engine eval vc  --manifest M.jsonl --out DIR [--steps 1,2,4,8] [--chain implicit,explicit]
    python -m engine eval asr --manifest M.jsonl --out DIR [--profile demo]
    python -m engine eval codec --profile demo --corpus DIR --out DIR [--per-voice 20] [--phoneme-probe 30]
    python -m engine eval phonemes --profile demo --corpus DIR [--out DIR]
    python -m engine eval build-testset librispeech --root LibriSpeech/test-clean --out DIR
    python -m engine eval build-testset vctk --root VCTK-Corpus-0.92 --out DIR
    python -m engine eval build-testset demo --corpus data/demo_corpus --out DIR [--task tts|self]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.cli._tasks import config_for
from engine.cli.common import add_config_args, run_cli


def _steps(text: str) -> list[int | None]:
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--steps takes comma-separated integers, e.g. 4,8,16 (got {text!r})") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("--steps values must be positive integers")
    return list(dict.fromkeys(values))


def _chains(text: str) -> list[str]:
    values = [v for v in text.replace(" ", "").split(",") if v]
    bad = [v for v in values if v not in ("implicit", "explicit")]
    if not values or bad:
        raise argparse.ArgumentTypeError(f"--chain takes implicit, explicit or implicit,explicit (got {text!r})")
    return list(dict.fromkeys(values))


def _add_run_args(parser: argparse.ArgumentParser) -> None:
    add_config_args(parser)
    parser.add_argument("--manifest", required=True, help="JSONL test set (see docs/evaluation.md)")
    parser.add_argument("--out", required=True, help="folder for audio, items.csv, summary.md and the plot")
    parser.add_argument("--steps", type=_steps, default=[None], help="ODE steps (flow) / iterations (SoundStorm), e.g. 4,8,16 (default: config)")
    parser.add_argument("--perceptual", choices=["flow", "soundstorm"], default=None)
    parser.add_argument("--chain", type=_chains, default=[None],
                        help="flow chain(s): implicit, explicit or implicit,explicit (one report and plot; the model that "
                             "perceptual.flow.path does not hold comes from perceptual.flow.other_chain_path)")
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0, help="generation seed (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N items")
    parser.add_argument("--asr", default="auto", help="auto | tiny | medium | a faster-whisper folder (default: auto)")
    parser.add_argument("--speaker", default="auto", help="auto | wavlm | resemblyzer | a WavLM-sv folder (default: auto)")
    parser.add_argument("--no-ground-truth", action="store_true", help="skip scoring the real recordings / sources")
    parser.add_argument("--resume", action="store_true", help="keep the rows of an earlier run in --out whose audio exists")


def _run(task: str, args: argparse.Namespace) -> int:
    from engine.eval.asr import WhisperASR
    from engine.eval.evaluate import Evaluator, evaluate, markdown_table, summarize
    from engine.eval.speaker import load_speaker_encoder
    from engine.eval.testsets import read_manifest, read_references
    from engine.pipeline import Engine, GenerationOptions

    config = config_for(args)
    items = read_manifest(args.manifest, task)[: args.limit]
    references = read_references(args.manifest)
    engine = Engine(config)
    score_device = "cuda" if engine.device.type == "cuda" else "cpu"
    print(f"loading scorers ({args.asr} ASR, {args.speaker} speaker encoder) ...", flush=True)
    evaluator = Evaluator(WhisperASR.load(args.asr, score_device), load_speaker_encoder(args.speaker, score_device), references)
    print(f"ASR: {evaluator.asr.name}; speaker encoder: {evaluator.speaker.name}; {len(items)} items"
          + (f"; voice ID against {len(references)} voice references" if references else ""), flush=True)
    options = GenerationOptions(guidance_scale=args.guidance, perceptual=args.perceptual, seed=args.seed)

    def progress(done: int, total: int, message: str) -> None:
        print(f"[{done}/{total}] {message}", flush=True)

    rows = evaluate(task, items, engine, evaluator, args.out, steps=args.steps, chains=args.chain, options=options,
                    ground_truth=not args.no_ground_truth, resume=args.resume, progress=progress)
    print(markdown_table(summarize(rows)))
    print(f"wrote {args.out}/items.csv, summary.md, summary.json" + (" and wer_sim_vs_steps.png" if len(args.steps) > 1 else ""))
    return 0


def _asr(args: argparse.Namespace) -> int:
    from engine.eval.asr import WhisperASR
    from engine.eval.asr_eval import asr_table, evaluate_asr
    from engine.eval.testsets import read_manifest
    from engine.cli.common import config_from_args
    from engine.pipeline import Engine

    config = config_from_args(args)
    items = read_manifest(args.manifest)[: args.limit]
    engine = Engine(config)
    print(f"loading the {args.asr} ASR scorer ...", flush=True)
    whisper = WhisperASR.load(args.asr, "cuda" if engine.device.type == "cuda" else "cpu")

    def progress(done: int, total: int, message: str) -> None:
        print(f"[{done}/{total}] {message}", flush=True)

    rows = evaluate_asr(items, engine, whisper, args.out, seed=args.seed, progress=progress)
    print(asr_table(rows))
    print(f"wrote {args.out}/items.csv, summary.md, summary.json")
    return 0


def _codec(args: argparse.Namespace) -> int:
    from engine.cli.common import config_from_args
    from engine.codec import Codec
    from engine.eval.asr import WhisperASR
    from engine.eval.codec_eval import evaluate_codec, pick_items, read_test_items
    from engine.eval.speaker import load_speaker_encoder

    config = config_from_args(args)
    codec = Codec.from_config(config.codec, device=args.device or "cpu")
    items = pick_items(read_test_items(args.corpus, heldout_voices_only=True), args.per_voice, args.seed)
    if not items:
        raise SystemExit(f"{args.corpus}/manifest.jsonl has no test utterances of held-out voices")
    others = pick_items(read_test_items(args.corpus, heldout_voices_only=False), args.classifier_per_voice, args.seed)
    print(f"codec {codec.name}: {len(items)} held-out items; loading scorers ...", flush=True)
    asr, speaker = WhisperASR.load(args.asr), load_speaker_encoder(args.speaker)

    def progress(done: int, total: int, message: str) -> None:
        print(f"[{done}/{total}] {message}", flush=True)

    report = evaluate_codec(codec, items, asr, speaker, args.out, progress=progress, classifier_items=others)
    print(report.markdown())
    if args.phoneme_probe:
        from engine.eval.phoneme_probe import phoneme_probe

        probe = phoneme_probe(codec, args.corpus, train_per_voice=args.phoneme_probe, test_per_voice=args.per_voice, seed=args.seed)
        print(probe.markdown())
        _write_probe(probe, args.out)
    print(f"bench: codec encode + decode {report.realtime_factor:.2f}x real time on {__import__('torch').get_num_threads()} threads")
    print(f"wrote {args.out}/summary.md, summary.json, items.jsonl and audio/")
    return 0


def _write_probe(report, out: str) -> None:
    """phonemes.json and phonemes.md of a phoneme-probe report in ``out``."""
    import json
    from dataclasses import asdict

    Path(out).mkdir(parents=True, exist_ok=True)
    Path(out, "phonemes.json").write_text(json.dumps(asdict(report), indent=2))
    Path(out, "phonemes.md").write_text(report.markdown() + "\n")


def _phonemes(args: argparse.Namespace) -> int:
    from engine.cli.common import config_from_args
    from engine.codec import Codec
    from engine.eval.phoneme_probe import phoneme_probe

    config = config_from_args(args)
    codec = Codec.from_config(config.codec, device=args.device or "cpu")
    print(f"codec {codec.name}: fitting the phoneme probe ({args.train_per_voice} utterances per training voice) ...", flush=True)
    report = phoneme_probe(codec, args.corpus, train_per_voice=args.train_per_voice, test_per_voice=args.per_voice,
                           steps=args.steps, seed=args.seed)
    print(report.markdown())
    if args.out:
        _write_probe(report, args.out)
        print(f"wrote {args.out}/phonemes.md and phonemes.json")
    return 0


def _build(args: argparse.Namespace) -> int:
    from engine.eval.testsets import build_demo_testset, build_testset, read_manifest

    if args.corpus == "demo":
        if args.speakers is not None:
            raise SystemExit("the demo test sets use every held-out voice: --speakers does not apply")
        path = build_demo_testset(args.root, args.out, task=args.task or "vc", per_voice=20 if args.per_speaker is None else args.per_speaker,
                                  prompt_seconds=args.prompt_seconds, seed=args.seed)
    else:
        path = build_testset(args.corpus, args.root, args.out, task=args.task, speakers=args.speakers,
                             per_speaker=1 if args.per_speaker is None else args.per_speaker, prompt_seconds=args.prompt_seconds,
                             seed=args.seed)
    if args.exclude:
        from engine.eval.testsets import write_manifest

        taken = {item.id for other in args.exclude for item in read_manifest(other)}
        items = read_manifest(path)
        kept = [item for item in items if item.id not in taken]
        if not kept:
            raise SystemExit(f"every item of this draw is in {', '.join(args.exclude)}: use another --seed or a larger --per-voice")
        path = write_manifest(path, kept)
        print(f"left out {len(items) - len(kept)} item(s) of {', '.join(args.exclude)}")
    n = len(read_manifest(path))
    print(f"wrote {path} ({n} items)")
    return 0


def _corpus_parser(sub, name: str, text: str) -> argparse.ArgumentParser:
    """A subcommand scored on a demo corpus's held-out voices: profile options, --corpus, --per-voice, --seed."""
    parser = sub.add_parser(name, help=text, description=text)
    add_config_args(parser)
    parser.add_argument("--corpus", required=True, help="folder written by `python -m engine demo corpus`")
    parser.add_argument("--per-voice", type=int, default=20, help="test utterances per held-out voice (0 = all; default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for task, text in (("tts", "zero-shot TTS: speak each item's text in its prompt voice"),
                       ("vc", "zero-shot voice conversion: each item's source in its prompt voice")):
        _add_run_args(sub.add_parser(task, help=text, description=text))
    a = sub.add_parser("asr", help="speech recognition through the semantic model (units -> text) on a test set's recordings",
                       description="speech recognition through the semantic model (audio -> RVQ-1 units -> text) on the recordings "
                                   "of a test set (a TTS item's reference, a VC item's source), with Whisper on the same audio as the floor")
    add_config_args(a)
    a.add_argument("--manifest", required=True, help="JSONL test set with audio and text (e.g. `build-testset demo --task tts`)")
    a.add_argument("--out", required=True, help="folder for items.csv, summary.md and summary.json")
    a.add_argument("--limit", type=int, default=None, help="only the first N items")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--asr", default="auto", help="the Whisper scorer: auto | tiny | medium | a faster-whisper folder (default: auto)")
    c = _corpus_parser(sub, "codec", "codec resynthesis (8 layers / RVQ-1) and the RVQ split on a demo corpus's held-out voices")
    c.add_argument("--out", required=True, help="folder for summary.md, summary.json, items.jsonl and the audio")
    c.add_argument("--classifier-per-voice", type=int, default=12, help="utterances per voice for the all-voices speaker classifier")
    c.add_argument("--phoneme-probe", type=int, default=0, metavar="N",
                   help="also fit the linear phoneme probe on N utterances per training voice (see `eval phonemes`; 0 = off)")
    c.add_argument("--asr", default="auto", help="auto | tiny | medium | a faster-whisper folder (default: auto)")
    c.add_argument("--speaker", default="auto", help="auto | wavlm | resemblyzer | a WavLM-sv folder (default: auto)")
    p = _corpus_parser(sub, "phonemes", "linear CTC phoneme probe: how much of the words RVQ-1 and all 8 layers carry (PER)")
    p.add_argument("--out", default=None, help="folder for phonemes.md and phonemes.json")
    p.add_argument("--train-per-voice", type=int, default=30, help="training-split utterances per training voice (default %(default)s)")
    p.add_argument("--steps", type=int, default=600, help="probe optimiser steps (default %(default)s)")
    b = sub.add_parser("build-testset", help="build a manifest from a local LibriSpeech / VCTK copy or a demo corpus")
    b.add_argument("corpus", choices=["librispeech", "vctk", "demo"])
    b.add_argument("--root", "--corpus", dest="root", required=True,
                   help="the corpus folder (LibriSpeech split, VCTK root, or a `python -m engine demo corpus` folder)")
    b.add_argument("--out", required=True, help="folder for manifest.jsonl and the prompt crops")
    b.add_argument("--task", choices=["tts", "vc", "self"], default=None,
                   help="default: librispeech -> tts, vctk -> vc, demo -> vc; self (demo only): conversion of held-out "
                        "speech into its own voice, the perceptual model's ceiling (an eval vc manifest)")
    b.add_argument("--speakers", type=int, default=None, help="speakers to sample (default: 40 for LibriSpeech, all for VCTK)")
    b.add_argument("--per-speaker", "--per-voice", dest="per_speaker", type=int, default=None,
                   help="items per speaker (0 = every 4-10 s utterance; default 1), demo: per held-out source voice (default 20)")
    b.add_argument("--prompt-seconds", type=float, default=3.0)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--exclude", action="append", default=[], metavar="MANIFEST",
                   help="leave out the items of another manifest (a development set beside a test set: the same draw "
                        "with another --seed, less the test set's items)")
    args = parser.parse_args(argv)
    if args.command == "build-testset":
        return run_cli(lambda: _build(args))
    if args.command == "codec":
        return run_cli(lambda: _codec(args))
    if args.command == "asr":
        return run_cli(lambda: _asr(args))
    if args.command == "phonemes":
        return run_cli(lambda: _phonemes(args))
    return run_cli(lambda: _run(args.command, args))


if __name__ == "__main__":
    sys.exit(main())
