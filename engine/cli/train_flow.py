"""Train the flow-matching perceptual model: python -m engine train-flow --config FLOW.yaml --data DIR --out DIR"""

from __future__ import annotations

import argparse
import os


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine train-flow", description=__doc__,
                                     epilog="Multi-GPU / multi-node: accelerate launch -m engine train-flow ... (same options)")
    parser.add_argument("--config", help="training YAML (see assets/configs/train/flow_base.yaml)")
    parser.add_argument("--data", help="folder written by `python -m engine extract`")
    parser.add_argument("--out", required=True, help="run folder: checkpoints/, TensorBoard logs, final/")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--train-set", dest="train_overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override the training YAML, e.g. --train-set train.lr=2e-4")
    parser.add_argument("--profile", default=os.environ.get("SPEECHGPT_PROFILE", "default"), help="app profile naming the codec")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override the app config")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--export", metavar="CHECKPOINT", help="instead of training: write RUN/checkpoints/step-N in the inference format to --out")
    parser.add_argument("--weights", choices=["ema", "raw"], default="ema", help="with --export: the EMA weights (default) or the trained ones")
    args = parser.parse_args(argv)
    if args.export is None and (args.config is None or args.data is None):
        parser.error("--config and --data are required to train (or pass --export CHECKPOINT --out DIR)")

    import logging

    from engine.codec import Codec
    from engine.config import from_dict, load_config, merge, parse_override, read_yaml
    from engine.train.train_flow import FlowTrainConfig, train_flow

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.export is not None:
        from engine.train.train_flow import export_checkpoint

        codec = Codec.from_config(load_config(args.profile, None, args.overrides).codec, device="cpu")
        folder = export_checkpoint(args.export, codec, args.out, args.weights)
        print(f"exported {args.export} ({args.weights} weights) to {folder}")
        return 0
    data = read_yaml(args.config)
    for text in args.train_overrides:
        data = merge(data, parse_override(text))
    run = from_dict(FlowTrainConfig, data)
    if args.max_steps is not None:
        run.train.max_steps = args.max_steps
    app = load_config(args.profile, None, args.overrides)
    codec = Codec.from_config(app.codec, device="cpu")
    history = train_flow(run, codec, args.data, args.out, resume=args.resume, progress=not args.quiet)
    losses = [h["loss"] for h in history if "loss" in h]
    if losses:
        print(f"done: step {history[-1]['step'] if 'step' in history[-1] else '?'}, first loss {losses[0]:.4f}, last loss {losses[-1]:.4f}")
    print(f"model written to {os.path.join(args.out, 'final')}")
    return 0
