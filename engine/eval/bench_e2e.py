"""End-to-end speed: time to first audio and real-time factor of TTS, conversion and a chat turn."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

DEFAULT_TEXT = "The quick brown fox jumps over the lazy dog. It was a bright cold day in April."


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--voice", default=None, help="voice name or audio file (default: the first library voice)")
    parser.add_argument("--source", default=None, help="audio file to convert / ask in chat (default: the voice clip)")
    parser.add_argument("--text", default=DEFAULT_TEXT)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per task after one warm-up")
    parser.add_argument("--perceptual", choices=["flow", "soundstorm"], default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--tasks", default="tts,convert,chat", help="comma-separated subset of tts,convert,chat")
    parser.add_argument("--source-seconds", type=float, default=None,
                        help="cut (or repeat) the source to this many seconds, e.g. 10 for the 10 s conversion figure")


TASKS = ("tts", "convert", "chat")


def fit_length(wav: np.ndarray, sample_rate: int, seconds: float) -> np.ndarray:
    """``wav`` cut, or repeated and cut, to exactly ``seconds`` of audio."""
    n = int(round(seconds * sample_rate))
    if n <= 0 or wav.size == 0:
        raise SystemExit("--source-seconds must be positive and the source must not be empty")
    return np.tile(wav, -(-n // wav.size))[:n]


def run(args: argparse.Namespace, config) -> int:
    import torch

    from engine.audio import SAMPLE_RATE, load_audio
    from engine.errors import ModelUnavailableError
    from engine.pipeline import ChatDone, Engine, GenerationOptions

    wanted = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = sorted(set(wanted) - set(TASKS))
    if unknown or not wanted:
        raise SystemExit(f"--tasks: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(TASKS)}")

    if args.perceptual:
        config.perceptual.kind = args.perceptual
    engine = Engine(config)
    from engine.cli._tasks import voice_arg

    voice = voice_arg(args.voice) if args.voice else None
    if voice is None:
        voices = engine.voices.list()
        if not voices:
            raise SystemExit("no voice given and the voice library is empty: pass --voice FILE")
        voice = voices[0].name
    source = Path(args.source) if args.source else None
    if source is None:
        sr, wav = engine.voices.preview(voice) if isinstance(voice, str) else (None, None)
        source = (sr, wav) if wav is not None else voice
    if args.source_seconds:
        wav = load_audio(source)  # 16 kHz mono float32
        source = (SAMPLE_RATE, fit_length(wav, SAMPLE_RATE, args.source_seconds))
    options = GenerationOptions(steps=args.steps, seed=0)
    tasks = {
        "tts": lambda: engine.tts(args.text, voice, options=options).metrics,
        "convert": lambda: engine.convert(source, voice, options=options).metrics,
        "chat": lambda: next(e for e in engine.chat(source, voice, options=options) if isinstance(e, ChatDone)).metrics,
    }
    print(f"device: {engine.device}, perceptual: {config.perceptual.kind}, profile: {config.profile}, "
          f"torch threads: {torch.get_num_threads()}")
    print(f"{'task':8s} {'first audio s':>14s} {'total s':>9s} {'audio s':>8s} {'RTF':>6s} {'peak GPU MB':>12s}  stages (s)")
    for name in wanted:
        fn = tasks[name]
        try:
            first = fn()  # warm-up (loads what this task needs; loading is never timed)
        except ModelUnavailableError as exc:
            print(f"{name:8s} skipped: {exc}")
            continue
        if first.load_s:
            print(f"  ({name}: models loaded in {first.load_s:.2f} s, not counted below)")
        enroll_steps = getattr(getattr(config.perceptual, config.perceptual.kind, None), "enroll_steps", 0)
        if enroll_steps and first.stages.get("prompt", 0.0) > 0.05:  # 0: the voice was enrolled by an earlier task
            print(f"  ({name}: the voice prompt, with the flow model's enrollment ({enroll_steps} steps, once per voice), "
                  f"took {first.stages.get('prompt', 0.0):.2f} s on first use, not counted below)")
        runs = [fn() for _ in range(max(args.repeats, 1))]
        mem = [r.peak_gpu_mem_mb for r in runs if r.peak_gpu_mem_mb is not None]
        stages = {k: float(np.mean([r.stages.get(k, 0.0) for r in runs])) for k in runs[0].stages}
        print(
            f"{name:8s} {np.mean([r.first_audio_s for r in runs]):14.3f} {np.mean([r.total_s for r in runs]):9.3f} "
            f"{np.mean([r.audio_s for r in runs]):8.2f} {np.mean([r.rtf for r in runs]):6.3f} "
            f"{(max(mem) if mem else float('nan')):12.0f}  " + ", ".join(f"{k} {v:.3f}" for k, v in stages.items())
        )
    return 0
