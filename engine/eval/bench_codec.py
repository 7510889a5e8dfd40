"""Codec speed: encode and decode time against audio time, for the configured codec
(``python -m engine bench codec --profile demo``). A benchmark line, not a test: run it on a quiet machine."""

from __future__ import annotations

import argparse
import time


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", default=None, help="audio file to time (default: the bundled voices joined to --seconds)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the default input")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (the best is reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: pipeline.cpu_threads)")


def _default_input(config, seconds: float):
    import numpy as np

    from engine.audio import SAMPLE_RATE, load_audio

    clips = [load_audio(p) for p in sorted(config.resolve_path(config.paths.bundled_voices_dir).glob("*/voice.wav"))]
    if not clips:
        raise SystemExit("no bundled voices found; pass --input FILE")
    wav = np.concatenate(clips)
    while wav.size < seconds * SAMPLE_RATE:
        wav = np.concatenate([wav, wav])
    return wav[: int(seconds * SAMPLE_RATE)]


def run(args: argparse.Namespace, config) -> int:
    from engine.audio import SAMPLE_RATE, load_audio
    from engine.codec import Codec
    from engine.threads import apply_cpu_threads

    threads = apply_cpu_threads(args.threads if args.threads is not None else config.pipeline.cpu_threads)
    wav = load_audio(args.input) if args.input else _default_input(config, args.seconds)
    seconds = wav.size / SAMPLE_RATE
    t0 = time.perf_counter()
    codec = Codec.from_config(config.codec, device=args.device or config.codec.device)
    load_s = time.perf_counter() - t0
    codec.decode(codec.encode(wav[: SAMPLE_RATE]).complete_emb)  # warm-up (lazy vocoder load, allocator)
    enc_s, dec_s = float("inf"), float("inf")
    for _ in range(max(args.repeats, 1)):
        t1 = time.perf_counter()
        enc = codec.encode(wav)
        t2 = time.perf_counter()
        codec.decode(enc.complete_emb)
        t3 = time.perf_counter()
        enc_s, dec_s = min(enc_s, t2 - t1), min(dec_s, t3 - t2)
    extra = ""
    voc = getattr(getattr(codec.model, "decoder", None), "cfg", None)
    if voc is not None and hasattr(voc, "vocoder_dtype"):
        from engine.melcodec.model import vocoder_dtype

        extra = f", vocoder {voc.vocoder} in {str(vocoder_dtype(voc.vocoder_dtype, codec.device)).replace('torch.', '')}"
    print(f"codec {codec.name} on {codec.device} ({threads} torch threads{extra}); loaded in {load_s:.1f} s")
    print(f"{seconds:.1f} s of audio: encode {enc_s:.2f} s ({seconds / enc_s:.1f}x real time), "
          f"decode {dec_s:.2f} s ({seconds / dec_s:.1f}x real time)")
    print(f"encode + decode: {seconds / (enc_s + dec_s):.2f}x real time (best of {args.repeats})")
    return 0
