"""One spoken chat turn: python -m engine chat --input Q.wav|--text "..." --voice NAME|FILE --out REPLY.wav"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys

from engine.cli._tasks import add_generation_args, config_for, options_from_args, voice_arg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine chat", description=__doc__)
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", help="the question as an audio file")
    src.add_argument("--text", help="the question as typed text")
    add_generation_args(parser)
    args = parser.parse_args(argv)
    from engine.audio import save_wav
    from engine.pipeline import ChatDone, Engine, TextDelta, Transcript

    engine = Engine(config_for(args))
    user = Path(args.input) if args.input else args.text  # a file only from --input, never from --text
    done = None
    for event in engine.chat(user, voice_arg(args.voice), options=options_from_args(args)):
        if isinstance(event, Transcript):
            print(f"you said: {event.text}", flush=True)
            print("reply: ", end="", flush=True)
        elif isinstance(event, TextDelta):
            sys.stdout.write(event.text)
            sys.stdout.flush()
        elif isinstance(event, ChatDone):
            done = event
    print()
    assert done is not None
    for w in done.warnings:
        print(f"warning: {w}")
    print(f"transcript: {done.transcript}")
    writer = engine.reply_writer.name if engine.config.semantic.reply_writer else None
    print(f"reply text: {done.text}" + (f"  (written by {writer})" if writer else ""))
    if done.wav.size:
        save_wav(args.out, done.wav, done.sample_rate)
        print(f"wrote {args.out}: {done.metrics.summary()}")
    else:
        print("the reply had no speech units; no audio written")
        return 1
    return 0
