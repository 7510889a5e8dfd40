"""Encode a corpus into sharded RVQ codes: python -m engine extract --wavs LIST_OR_DIR --out DIR,
or one split of a demo corpus: python -m engine extract --manifest CORPUS --split train --out DIR"""

from __future__ import annotations

import argparse

from engine.cli.common import add_config_args, config_from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine extract", description=__doc__,
                                     epilog="Runs on the GPU when there is one (--device cpu to force the CPU). "
                                            "Rerun the same command to resume; files that fail are listed in OUT/failed.tsv.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--wavs",
                        help="folder of audio (LibriSpeech/MLS transcripts are picked up), or a list file "
                             "(path[TAB]transcript per line, or .jsonl with path/text/speaker/id)")
    source.add_argument("--manifest", metavar="CORPUS",
                        help="a demo corpus (`python -m engine demo corpus`): its folder or its manifest.jsonl; "
                             "only --split is encoded")
    parser.add_argument("--split", choices=["train", "test", "all"], default="train",
                        help="with --manifest: which rows (default train: held-out voices and sentences are never included)")
    parser.add_argument("--out", required=True, help="output folder (meta.json + index.jsonl + shard-*.npz); rerun to resume")
    parser.add_argument("--batch-frames", type=int, default=None,
                        help="padded codec frames (50 per second) per encoder batch (default 3000 = 60 s; "
                             "raise on a GPU, e.g. 30000; 0 = one file at a time, exact solo codes)")
    parser.add_argument("--batch-seconds", type=float, default=None, help="the same budget in seconds of audio (--batch-frames / 50)")
    parser.add_argument("--shard-size", type=int, default=1000, help="utterances per shard")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="skip (and report) longer files; 0 = no limit")
    parser.add_argument("--workers", type=int, default=4, help="threads decoding audio ahead of the encoder (0 = none)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_args(parser)
    args = parser.parse_args(argv)
    if args.batch_frames is not None and args.batch_seconds is not None:
        parser.error("give --batch-frames or --batch-seconds, not both")
    from engine.codec import Codec
    from engine.train.extract import extract, list_corpus_items

    batch_frames = args.batch_frames if args.batch_frames is not None else (
        round(args.batch_seconds * Codec.frame_rate) if args.batch_seconds is not None else 3000)

    if args.split != "train" and not args.manifest:
        parser.error("--split needs --manifest (a demo corpus)")
    items = list_corpus_items(args.manifest, args.split) if args.manifest else None
    if items is not None:
        print(f"{len(items)} {args.split} utterances in {args.manifest}")
    cfg = config_from_args(args)
    codec = Codec.from_config(cfg.codec, device=cfg.pipeline.device)
    print(f"encoding with the {codec.name!r} codec on {codec.device}")
    stats = extract(args.wavs or args.manifest, args.out, codec, items=items, batch_frames=batch_frames, shard_size=args.shard_size, progress=not args.quiet,
                    max_seconds=args.max_seconds or None, workers=args.workers)
    print(f"{stats['encoded']} encoded, {stats['skipped_existing']} already done, {stats['failed']} failed"
          + (f" (see {args.out}/failed.tsv)" if stats["failed"] else ""))
    return 0
