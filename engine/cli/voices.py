"""Manage the voice library: python -m engine voices list|add|rename|delete|export"""

from __future__ import annotations

import argparse

from engine.cli.common import add_config_args, config_from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine voices", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list the voices (bundled and yours)")
    a = sub.add_parser("add", help="add a voice from an audio file (silence trimmed, cropped to the prompt length)")
    a.add_argument("name")
    a.add_argument("audio")
    a.add_argument("--description", default="")
    a.add_argument("--licence", default="", help="where the recording comes from and under which terms")
    a.add_argument("--overwrite", action="store_true")
    r = sub.add_parser("rename", help="rename one of your voices")
    r.add_argument("old")
    r.add_argument("new")
    d = sub.add_parser("delete", help="delete one of your voices")
    d.add_argument("name")
    e = sub.add_parser("export", help="write a voice's prompt audio to a WAV file")
    e.add_argument("name")
    e.add_argument("out")
    for p in sub.choices.values():
        add_config_args(p)
    args = parser.parse_args(argv)
    from engine.voices import VoiceLibrary

    config = config_from_args(args)
    lib = VoiceLibrary.from_config(config)  # list / rename / delete / export never load torch or a model
    if args.cmd == "list":
        voices = lib.list()
        if not voices:
            print(f"no voices yet in {lib.root}; add one with `python -m engine voices add NAME FILE`")
        for v in voices:
            print(f"{v.name:24s} {v.duration:5.1f} s  {'bundled' if v.bundled else 'yours  '}  {v.description}")
    elif args.cmd == "add":
        from engine.pipeline import Engine  # adding encodes the clip: only this needs the codec

        v = lib.add(args.name, args.audio, codec=Engine(config).codec, description=args.description, licence=args.licence, overwrite=args.overwrite)
        print(f"added {v.name} ({v.duration:.1f} s) to {lib.root}")
    elif args.cmd == "rename":
        print(f"renamed to {lib.rename(args.old, args.new).name}")
    elif args.cmd == "delete":
        lib.delete(args.name)
        print(f"deleted {args.name}")
    else:
        from engine.audio import save_wav

        sr, wav = lib.preview(args.name)
        save_wav(args.out, wav, sr)
        print(f"wrote {args.out}")
    return 0
