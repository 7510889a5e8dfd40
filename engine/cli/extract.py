"""Encode a corpus into sharded RVQ codes: python -m engine extract --wavs LIST_OR_DIR --out DIR"""

from __future__ import annotations

import argparse

from engine.cli.common import add_config_args, config_from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine extract", description=__doc__)
    parser.add_argument("--wavs", required=True, help="folder of audio, or a list file (path[TAB]transcript per line, or .jsonl)")
    parser.add_argument("--out", required=True, help="output folder (index.jsonl + shard-*.npz); rerun to resume")
    parser.add_argument("--batch-seconds", type=float, default=60.0, help="audio per codec batch (raise on a GPU; 0 = one file at a time, exact solo codes)")
    parser.add_argument("--shard-size", type=int, default=1000, help="utterances per shard")
    parser.add_argument("--quiet", action="store_true")
    add_config_args(parser)
    args = parser.parse_args(argv)
    from engine.codec import Codec
    from engine.train.extract import extract

    cfg = config_from_args(args)
    codec = Codec.from_config(cfg.codec, device=cfg.pipeline.device)
    stats = extract(args.wavs, args.out, codec, args.batch_seconds, args.shard_size, progress=not args.quiet)
    print(f"{stats['encoded']} encoded, {stats['skipped_existing']} already done, {stats['failed']} failed"
          + (f" (see {args.out}/failed.tsv)" if stats["failed"] else ""))
    return 0
