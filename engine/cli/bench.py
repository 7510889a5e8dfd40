"""Speed benchmarks: python -m engine bench semantic|perceptual|e2e [options]"""

from __future__ import annotations

import argparse
import importlib

from engine.cli.common import add_config_args, config_from_args

BENCHES = {
    "semantic": ("engine.eval.bench_semantic", "LLM tokens per second and time to first unit"),
    "perceptual": ("engine.eval.bench_perceptual", "flow model time per call and RTF per size and NFE"),
    "e2e": ("engine.eval.bench_e2e", "time to first audio and RTF for TTS, conversion and a chat turn"),
    "codec": ("engine.eval.bench_codec", "codec encode and decode time against audio time"),
    "stream": ("engine.eval.bench_stream", "time to first audio and per-chunk cost of seamless streamed speech vs independent chunks"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(argv or [])
    if not argv or argv[0] not in BENCHES:
        listing = "\n".join(f"  {name:11s} {summary}" for name, (_, summary) in BENCHES.items())
        print(f"usage: python -m engine bench {{{','.join(BENCHES)}}} [options]\n\n{listing}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    name = argv[0]
    module_name, summary = BENCHES[name]
    module = importlib.import_module(module_name)  # only the chosen benchmark's imports
    parser = argparse.ArgumentParser(prog=f"python -m engine bench {name}", description=summary)
    add_config_args(parser)
    module.add_args(parser)
    args = parser.parse_args(argv[1:])
    return int(module.run(args, config_from_args(args)) or 0)
