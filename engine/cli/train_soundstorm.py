"""Train the SoundStorm perceptual baseline: python -m engine train-soundstorm --data DIR --out DIR [--size tiny|small|base]"""

from __future__ import annotations

import argparse
import os


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine train-soundstorm", description=__doc__,
                                     epilog="Multi-GPU / multi-node: accelerate launch -m engine train-soundstorm ... (same options). "
                                            "Use the result with --perceptual soundstorm --set perceptual.soundstorm.path=OUT/final")
    parser.add_argument("--data", required=True, help="folder written by `python -m engine extract` (index.jsonl + shards)")
    parser.add_argument("--out", required=True, help="run folder: checkpoints/, TensorBoard logs, final/")
    parser.add_argument("--size", default=None, choices=["tiny", "small", "base"],
                        help="model size and its default training settings (default: the --config file's, else base)")
    parser.add_argument("--config", default=None, help="training YAML: {model: {size, mode, init_from, init_from_codec}, train: {...}}")
    parser.add_argument("--init-from", default=None, help="fine-tune from a checkpoint: our folder or a public .pt file")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--train-set", dest="train_overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a training setting, e.g. --train-set train.lr=2e-4 (repeatable)")
    parser.add_argument("--profile", default=os.environ.get("SPEECHGPT_PROFILE", "default"),
                        help="app profile naming the codec (its codebooks initialise the embeddings)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override the app config")
    parser.add_argument("--no-codec", action="store_true", help="do not load the codec (random token embeddings)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    import dataclasses
    import logging

    from engine.config import from_dict, load_config, merge, parse_override, read_yaml, to_dict
    from engine.errors import ConfigError
    from engine.train.train_soundstorm import SoundStormTrainConfig, data_codec, train_soundstorm

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not os.path.isfile(os.path.join(args.data, "index.jsonl")):
        raise ConfigError(f"{args.data} holds no index.jsonl: extract codes first with `python -m engine extract`")
    file_data = read_yaml(args.config) if args.config else {}
    size = args.size or file_data.get("model", {}).get("size") or "base"
    data = merge(to_dict(SoundStormTrainConfig.preset(size)), file_data)
    for text in args.train_overrides:
        data = merge(data, parse_override(text))
    run = from_dict(SoundStormTrainConfig, data)
    run.model.size = size if args.size else run.model.size
    if args.max_steps is not None:
        run.train.max_steps = args.max_steps
    if args.init_from:
        run.model.init_from = args.init_from

    app = load_config(args.profile, None, args.overrides)
    codec_name = data_codec(args.data, app.codec.name)
    codebooks = None
    if run.model.init_from_codec and not run.model.init_from and not args.no_codec and not args.resume:
        if codec_name != app.codec.name:
            raise ConfigError(f"{args.data} holds codes of the {codec_name!r} codec but the profile's codec is "
                              f"{app.codec.name!r}; pass the matching --profile/--set codec.* or --no-codec")
        from engine.codec import Codec

        codebooks = Codec.from_config(app.codec, device="cpu").codebooks()
    print(f"training SoundStorm ({run.model.size}) on {codec_name!r} codes: "
          f"{ {k: v for k, v in dataclasses.asdict(run.train).items() if k in ('max_steps', 'lr', 'batch_frames')} }")
    history = train_soundstorm(run, args.data, args.out, codec_name=codec_name, codebooks=codebooks,
                               resume=args.resume, progress=not args.quiet)
    losses = [h["loss"] for h in history if "loss" in h]
    if losses:
        print(f"done: step {history[-1].get('step', '?')}, first loss {losses[0]:.4f}, last loss {losses[-1]:.4f}")
    print(f"model written to {os.path.join(args.out, 'final')}")
    return 0
