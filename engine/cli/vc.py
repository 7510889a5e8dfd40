"""Zero-shot voice conversion: python -m engine vc --source SRC --voice NAME|FILE --out OUT.wav"""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.cli._tasks import add_generation_args, config_for, options_from_args, print_progress, voice_arg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine vc", description=__doc__)
    parser.add_argument("--source", required=True, help="audio whose words (RVQ-1 tokens) are kept")
    add_generation_args(parser)
    args = parser.parse_args(argv)
    from engine.audio import save_wav
    from engine.pipeline import Engine

    engine = Engine(config_for(args))
    result = engine.convert(Path(args.source), voice_arg(args.voice), options=options_from_args(args), progress=print_progress)
    save_wav(args.out, result.wav, result.sample_rate)
    print(f"wrote {args.out}: {result.metrics.summary()}")
    return 0
