"""The demo profile's commands: python -m engine demo corpus --out DIR | augment --corpus DIR --out DIR2"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.cli.common import run_cli


def _corpus(args: argparse.Namespace) -> int:
    from engine.demo.corpus import CorpusConfig, build_corpus, format_report
    from engine.demo.voices_tts import DEFAULT_VOICES
    from engine.errors import EngineError

    voices = DEFAULT_VOICES
    if args.voices:
        known = {v.name: v for v in DEFAULT_VOICES}
        unknown = [name for name in args.voices if name not in known]
        if unknown:
            raise EngineError(f"unknown voice(s) {', '.join(unknown)}; known: {', '.join(known)}")
        voices = tuple(known[name] for name in args.voices)
    cfg = CorpusConfig(out=Path(args.out), hours=args.hours, jobs=args.jobs, voices=voices, seed=args.seed,
                       resume=args.resume, progress=not args.quiet, max_minutes=args.max_minutes)
    report = build_corpus(cfg)
    print(format_report(cfg, report))
    return 0


def _augment(args: argparse.Namespace) -> int:
    from engine.demo.augment import AugmentConfig, augment_corpus

    speeds = args.speeds if args.speeds is not None else ([] if args.new_voices else [0.9, 1.1])
    report = augment_corpus(AugmentConfig(corpus=Path(args.corpus), out=Path(args.out), speeds=tuple(speeds), new_voices=args.new_voices,
                                          minutes=args.minutes, seed=args.seed, progress=not args.quiet))
    return 1 if report.failures and not (report.augmented or report.reused) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine demo", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    corpus = sub.add_parser("corpus", help="build the offline speech corpus (many TTS voices, free sentences)",
                            description="Render English sentences with offline TTS voices (Piper, Kokoro, flite, "
                                        "festival, espeak-ng) into 16 kHz WAV + manifest.jsonl + corpus.json.",
                            epilog="Rerun with --resume to continue: valid files are kept, the manifest is rebuilt. "
                                   "A voice whose engine is missing is skipped and reported.")
    corpus.add_argument("--out", default="data/demo_corpus", help="output folder (default: %(default)s)")
    corpus.add_argument("--hours", type=float, default=10.0, help="hours of audio in all, shared by voice weight")
    corpus.add_argument("--jobs", type=int, default=2, help="worker processes, one thread each (default: %(default)s)")
    corpus.add_argument("--voices", nargs="+", default=None, metavar="NAME",
                        help="only these voices (default: all; names in engine/demo/voices_tts.py DEFAULT_VOICES)")
    corpus.add_argument("--seed", type=int, default=0, help="sentence order, split and assignment seed")
    corpus.add_argument("--resume", action="store_true", help="continue a corpus already in --out")
    corpus.add_argument("--max-minutes", type=float, default=None,
                        help="start no new work after this many minutes (balanced across voices; --resume adds the rest)")
    corpus.add_argument("--quiet", action="store_true", help="no progress bar")
    aug = sub.add_parser("augment", help="speaker augmentation: copies of the train rows as new voices",
                         description="Write a new corpus folder: the source corpus's rows (hard-linked) plus, for every train row "
                                     "and speed factor, a resampled copy (pitch, formants and tempo x factor) as a new voice "
                                     "VOICE-spNNN, and/or --new-voices N voices VOICE-vtNNN, each a training voice with its own "
                                     "pitch, vocal tract and spectral tilt reading about --minutes of its sentences. Held-out "
                                     "voices and sentences are never copied. Resumable.")
    aug.add_argument("--corpus", default="data/demo_corpus", help="source corpus folder (default: %(default)s)")
    aug.add_argument("--out", default="data/demo_corpus_aug", help="output folder, a corpus of its own (default: %(default)s)")
    aug.add_argument("--speeds", type=float, nargs="+", default=None, metavar="F",
                     help="speed factors, each one new voice per training voice (default: 0.9 1.1 without --new-voices, "
                          "else none; allowed 0.7-1.4)")
    aug.add_argument("--new-voices", type=int, default=0, metavar="N",
                     help="voices with their own pitch (x0.72-1.4), formants (x0.86-1.18) and tilt (default: %(default)s)")
    aug.add_argument("--minutes", type=float, default=4.0, help="speech per new voice (default: %(default)s)")
    aug.add_argument("--seed", type=int, default=0, help="draws of the new voices and their sentences (default: %(default)s)")
    aug.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.action == "corpus":
        return run_cli(lambda: _corpus(args))
    if args.action == "augment":
        return run_cli(lambda: _augment(args))
    parser.print_help(sys.stderr)
    return 2
