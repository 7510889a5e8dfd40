"""Command-line entry: ``python -m engine <command> [args]``.

Each command lives in ``engine/cli/<command>.py`` (dashes become underscores), exposes
``main(argv) -> int``, and is imported only when it runs, so ``--help`` stays instant.
"""

from __future__ import annotations

import importlib
import sys

#: command -> one-line summary (shown by ``python -m engine --help``)
COMMANDS: dict[str, str] = {
    "info": "show the resolved config, devices and which model files are present or missing",
    "tts": "zero-shot text to speech in a voice (LLM -> units -> perceptual -> codec)",
    "vc": "zero-shot voice conversion: keep what is said, change who says it",
    "chat": "one spoken chat turn: question audio in, transcript + reply text + spoken reply out",
    "voices": "manage the voice library (list, add, rename, delete)",
    "codec": "resynthesise audio through the codec (all 8 RVQ layers, or RVQ-1 only)",
    "train-codec": "train the demo codec (SpeechTokenizer recipe: RVQ-1 distilled from Whisper, mel decoder + istft head or HiFi-GAN)",
    "extract": "encode a corpus with the codec into sharded RVQ codes for training",
    "train-flow": "train the flow-matching perceptual model (accelerate: CPU, GPU, multi-GPU)",
    "train-soundstorm": "train the SoundStorm perceptual baseline",
    "train-llm": "build instruction data (from audio or extracted codes); fine-tune the semantic LLM or train a small one from scratch",
    "eval": "evaluate TTS / VC (WER, speaker similarity) or build test sets",
    "bench": "speed benchmarks: semantic, perceptual, e2e",
    "demo": "the demo profile: build the offline speech corpus (demo corpus)",
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: python -m engine <command> [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {summary}" for name, summary in COMMANDS.items()]
    lines += ["", "Run `python -m engine <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from engine import __version__

        print(__version__)
        return 0
    command = argv[0]
    if command not in COMMANDS:
        print(f"unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"engine.cli.{command.replace('-', '_')}")
    return int(module.main(argv[1:]) or 0)
