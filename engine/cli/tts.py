"""Zero-shot text to speech: python -m engine tts --text "..." --voice NAME|FILE --out OUT.wav"""

from __future__ import annotations

import argparse

from engine.cli._tasks import add_generation_args, config_for, options_from_args, print_progress, voice_arg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine tts", description=__doc__)
    parser.add_argument("--text", required=True, help="the text to speak (numbers, dates, money are normalised)")
    add_generation_args(parser)
    parser.add_argument("--candidates", type=int, default=None,
                        help="unit sequences sampled per sentence, the one the codec's phoneme head reads best spoken "
                             "(default: the profile's semantic.tts_candidates; 1 = one sample, streamed)")
    args = parser.parse_args(argv)
    from engine.audio import save_wav
    from engine.pipeline import Engine

    engine = Engine(config_for(args))
    result = engine.tts(args.text, voice_arg(args.voice), options=options_from_args(args), progress=print_progress)
    save_wav(args.out, result.wav, result.sample_rate)
    for w in result.warnings:
        print(f"warning: {w}")
    print(f"text: {result.text}")
    print(f"wrote {args.out}: {result.metrics.summary()}")
    return 0
