"""Speed benchmarks: python -m engine bench semantic|perceptual|e2e [options]"""

from __future__ import annotations

import argparse
import importlib

from engine.cli.common import add_config_args, config_from_args

BENCHES = {
    "semantic": ("engine.eval.bench_semantic", "LLM tokens per second and time to first unit"),
    "perceptual": ("engine.eval.bench_perceptual", "flow model time per call and RTF per size and NFE"),
    "e2e": ("engine.eval.bench_e2e", "time to first audio and RTF for TTS, conversion and a chat turn"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine bench", description=__doc__)
    sub = parser.add_subparsers(dest="bench", required=True)
    modules = {}
    for name, (module_name, summary) in BENCHES.items():
        p = sub.add_parser(name, help=summary, description=summary)
        add_config_args(p)
        module = importlib.import_module(module_name)
        module.add_args(p)
        modules[name] = module
    args = parser.parse_args(argv)
    return int(modules[args.bench].run(args, config_from_args(args)) or 0)
