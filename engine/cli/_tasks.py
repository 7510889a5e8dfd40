"""Options shared by the tts / vc / chat commands."""

from __future__ import annotations

import argparse

from engine.cli.common import add_config_args


def add_generation_args(parser: argparse.ArgumentParser) -> None:
    add_config_args(parser)
    g = parser.add_argument_group("generation")
    g.add_argument("--voice", required=True, help="a voice library name, or an audio file to take the voice from")
    g.add_argument("--out", required=True, help="output WAV file (16 kHz)")
    g.add_argument("--perceptual", choices=["flow", "soundstorm"], default=None, help="perceptual model (default: config)")
    g.add_argument("--steps", type=int, default=None, help="ODE steps (flow) or MaskGIT iterations (SoundStorm)")
    g.add_argument("--chain", choices=["implicit", "explicit"], default=None, help="flow chain mode")
    g.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale on the voice prompt")
    g.add_argument("--temperature", type=float, default=None, help="LLM sampling temperature")
    g.add_argument("--top-p", type=float, default=None, help="LLM nucleus sampling")
    g.add_argument("--seed", type=int, default=None, help="random seed (same seed, same output)")


def voice_arg(value: str):
    """``--voice``: an existing audio file (the command line is a trusted caller, so a path is
    allowed here) becomes a ``pathlib.Path``; anything else is a library voice name."""
    from pathlib import Path

    path = Path(value).expanduser()
    return path if path.is_file() else value


def options_from_args(args: argparse.Namespace):
    from engine.pipeline import GenerationOptions

    return GenerationOptions(
        steps=args.steps,
        chain=args.chain,
        guidance_scale=args.guidance,
        perceptual=args.perceptual,
        temperature=getattr(args, "temperature", None),
        top_p=getattr(args, "top_p", None),
        seed=args.seed,
        candidates=getattr(args, "candidates", None),
    )


def config_for(args: argparse.Namespace):
    from engine.cli.common import config_from_args

    if args.perceptual:
        args.overrides.append(f"perceptual.kind={args.perceptual}")
    return config_from_args(args)


def print_progress(fraction: float, message: str) -> None:
    print(f"[{fraction * 100:3.0f}%] {message}", flush=True)
