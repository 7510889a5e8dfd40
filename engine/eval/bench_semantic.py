"""Semantic LLM speed: tokens per second and time to first unit, for the configured model and precision.
Real time needs at least 50 units per second (RVQ-1 runs at 50 Hz)."""

from __future__ import annotations

import argparse
import time


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text", default="The quick brown fox jumps over the lazy dog near the quiet river bank.")
    parser.add_argument("--units", type=int, default=250, help="speech units to generate per run (5 s)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quant", choices=["none", "4bit"], default=None, help="override semantic.quant")


def run(args: argparse.Namespace, config) -> int:
    from dataclasses import replace

    from engine.semantic.model import SemanticModel

    cfg = config.semantic
    if args.quant:
        cfg = replace(cfg, quant=args.quant)
    sampling = replace(cfg.sampling, max_new_tokens=args.units + 8, seed=0)
    device = cfg.device if cfg.device != "auto" else config.pipeline.device
    t0 = time.perf_counter()
    model = SemanticModel.from_config(replace(cfg, unit_chunk=1), device=device)
    load_s = time.perf_counter() - t0
    print(f"model: {model.name} ({cfg.family}), device {model.device}, dtype {next(model.model.parameters()).dtype}, quant {cfg.quant}; loaded in {load_s:.1f} s")
    print(f"{'run':>4s} {'units':>6s} {'first unit s':>13s} {'units/s':>9s} {'real time':>10s}")
    for i in range(max(args.repeats, 1) + 1):
        start = time.perf_counter()
        first = None
        count = 0
        for chunk in model.stream_speak(args.text, sampling):
            if first is None:
                first = time.perf_counter() - start
            count += len(chunk)
        total = time.perf_counter() - start
        rate = count / max(total - (first or 0), 1e-9) if count > 1 else 0.0
        label = "warm" if i == 0 else str(i)
        print(f"{label:>4s} {count:6d} {first or float('nan'):13.3f} {rate:9.1f} {'yes' if rate >= 50 else 'no':>10s}", flush=True)
    return 0
