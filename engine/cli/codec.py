"""Resynthesis through the codec: python -m engine codec --profile demo --input A.wav --out B.wav [--layers 1|8]

All 8 RVQ layers give the codec's reconstruction; ``--layers 1`` decodes RVQ-1 (the semantic
tokens) alone: the words stay, the voice becomes the codec's average voice. Works for every codec kind.
"""

from __future__ import annotations

import argparse
import time

from engine.cli.common import add_config_args, config_from_args, run_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine codec", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="audio file (any rate / channels soundfile reads)")
    parser.add_argument("--out", required=True, help="output WAV (16 kHz)")
    parser.add_argument("--layers", type=int, default=8, help="RVQ layers to decode from, 1..n_q (default: all 8)")
    parser.add_argument("--codes", default=None, help="also write the codes [n_q, T] as .npy here")
    add_config_args(parser)
    args = parser.parse_args(argv)
    return run_cli(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    import numpy as np

    from engine.audio import SAMPLE_RATE, load_audio, save_wav
    from engine.codec import Codec

    config = config_from_args(args)
    t0 = time.perf_counter()
    codec = Codec.from_config(config.codec, device=args.device or config.codec.device)
    if not 1 <= args.layers <= codec.n_q:
        raise SystemExit(f"--layers must lie in 1..{codec.n_q}")
    wav = load_audio(args.input, max_seconds=config.pipeline.max_input_seconds)
    t1 = time.perf_counter()
    enc = codec.encode(wav)
    t2 = time.perf_counter()
    out = codec.decode(codec.embed(enc.codes[: args.layers]))
    t3 = time.perf_counter()
    save_wav(args.out, out.numpy(), SAMPLE_RATE)
    if args.codes:
        np.save(args.codes, enc.codes.numpy())
    seconds = wav.size / SAMPLE_RATE
    print(f"wrote {args.out}: codec {codec.name}, {enc.num_frames} frames x {args.layers} of {codec.n_q} layers, "
          f"{seconds:.2f} s of audio; encode {t2 - t1:.2f} s, decode {t3 - t2:.2f} s "
          f"({seconds / max(t3 - t1, 1e-9):.1f}x real time; codec loaded in {t1 - t0:.1f} s)")
    return 0
