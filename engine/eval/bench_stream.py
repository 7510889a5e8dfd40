"""Cost of seamless streaming: time to first audio and per-chunk time of a streamed reply, each
chunk continuing the previous ones (engine.perceptual.streaming) versus every chunk synthesised
on its own (the former behaviour), with the configured perceptual model and codec.

Speed does not depend on the weights, so random models of the configured size are fine
(e.g. ``--profile tiny --set perceptual.flow.size=base`` on a GPU).
"""

from __future__ import annotations

import argparse
import time

import torch


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reply-seconds", type=float, default=6.0, help="length of the streamed reply")
    parser.add_argument("--chunk-seconds", type=float, default=1.0, help="unit chunk size (semantic.unit_chunk / 50)")
    parser.add_argument("--prompt-seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per variant (the best is reported)")


def run(args: argparse.Namespace, config) -> int:
    """Print, per variant, the time to first audio, the mean and worst chunk time, and the total."""
    import numpy as np

    from engine.perceptual.base import Prompt
    from engine.perceptual.streaming import StreamSettings, UtteranceSynthesizer
    from engine.pipeline import Engine

    engine = Engine(config)
    codec, model = engine.codec, engine.perceptual()
    rate = codec.frame_rate
    g = torch.Generator().manual_seed(0)
    units = torch.randint(0, codec.codebook_size, (int(args.reply_seconds * rate),), generator=g).tolist()
    prompt = Prompt.from_codes(torch.randint(0, codec.codebook_size, (codec.n_q, int(args.prompt_seconds * rate)), generator=g), codec)
    chunk = max(int(args.chunk_seconds * rate), 1)
    p = config.pipeline
    settings = StreamSettings(p.stream_context_frames, p.stream_overlap_frames, p.stream_holdback_frames, p.stream_lookahead_frames)

    def sync() -> None:
        if engine.device.type == "cuda":
            torch.cuda.synchronize(engine.device)

    def independent() -> list[float]:
        marks, start = [], time.perf_counter()
        for i in range(0, len(units), chunk):
            codec.decode(model.generate(torch.tensor(units[i : i + chunk]), prompt, seed=i), decoder=model.output_decoder()).numpy()
            sync()
            marks.append(time.perf_counter() - start)
        return marks

    def streamed() -> list[float]:
        syn = UtteranceSynthesizer(model, codec, prompt, settings, seed=0)
        marks, start = [], time.perf_counter()
        for i in range(0, len(units), chunk):
            syn.push(units[i : i + chunk])
            sync()
            marks.append(time.perf_counter() - start)
        syn.finish()
        sync()
        marks.append(time.perf_counter() - start)
        return marks

    where = torch.cuda.get_device_name(engine.device) if engine.device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    print(f"perceptual {model.kind}, device {engine.device} ({where}); {args.reply_seconds:g} s reply in {chunk}-frame chunks, "
          f"{args.prompt_seconds:g} s prompt; stream settings {settings}")
    print(f"{'variant':12s} {'first audio s':>14s} {'first audio len s':>18s} {'mean chunk s':>13s} {'worst chunk s':>14s} {'total s':>8s}")
    independent()  # warm-up
    for name, fn, first_len in (("independent", independent, chunk / rate),
                                ("streamed", streamed, max(chunk - settings.lookahead_frames - settings.holdback_frames, 0) / rate)):
        best = min((fn() for _ in range(max(args.repeats, 1))), key=lambda m: m[-1])
        steps = np.diff([0.0] + best)
        print(f"{name:12s} {best[0]:14.4f} {first_len:18.2f} {steps.mean():13.4f} {steps.max():14.4f} {best[-1]:8.4f}", flush=True)
    return 0
