"""Train the demo codec: python -m engine train-codec --corpus DIR --out DIR [--config YAML] [--resume]"""

from __future__ import annotations

import argparse
import os

DEFAULT_CONFIG = "assets/configs/train/codec_demo.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine train-codec", description=__doc__,
                                     epilog="Teacher features (Whisper tiny.en) are computed once and cached in CORPUS/teacher/. "
                                            "Multi-GPU: accelerate launch -m engine train-codec ... (same options)")
    parser.add_argument("--corpus", required=True, help="folder written by `python -m engine demo corpus`")
    parser.add_argument("--out", required=True, help="run folder: checkpoints/, TensorBoard logs, final/")
    parser.add_argument("--config", default=None, help=f"training YAML (default {DEFAULT_CONFIG})")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    parser.add_argument("--train-set", dest="train_overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override the training YAML, e.g. --train-set train.lr=2e-4")
    parser.add_argument("--teacher-only", action="store_true", help="only compute the teacher-feature cache, then stop")
    parser.add_argument("--decoder-inputs-only", action="store_true",
                        help="only build the flow outputs that decoder adaptation (`adapt` in the YAML) trains on, then stop")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    import logging

    import torch

    from engine.config import REPO_ROOT, from_dict, merge, parse_override, read_yaml
    from engine.train.train_codec import WAVE_PHASES, CodecTrainConfig, decoder_inputs, select_utterances, ensure_teacher, train_codec

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    data = read_yaml(args.config or REPO_ROOT / DEFAULT_CONFIG)
    for text in args.train_overrides:
        data = merge(data, parse_override(text))
    run = from_dict(CodecTrainConfig, data)
    if args.max_steps is not None:
        run.train.max_steps = args.max_steps
    if run.init_from and not os.path.exists(run.init_from) and (REPO_ROOT / run.init_from).exists():
        run.init_from = str(REPO_ROOT / run.init_from)  # a repo path in a shipped config works from any folder
    if args.teacher_only:
        train, valid = select_utterances(run, args.corpus)
        cache = ensure_teacher(args.corpus, train + valid, progress=not args.quiet)
        print(f"teacher features for {len(cache)} utterances in {cache.folder}")
        return 0
    if args.decoder_inputs_only:
        if not run.adapt.codes:
            parser.error("--decoder-inputs-only needs adapt.codes in the training YAML (assets/configs/train/codec_demo_v3_adapt.yaml)")
        train, valid = select_utterances(run, args.corpus)
        cache = decoder_inputs(run, train, valid, args.out, progress=not args.quiet)
        print(f"flow outputs for {len(cache)} utterances in {cache.folder}")
        return 0
    history = train_codec(run, args.corpus, args.out, resume=args.resume, progress=not args.quiet)
    metric = "wave_l1" if run.trainable in WAVE_PHASES else "mel_l1"
    losses = [h for h in history if metric in h]
    if losses:
        last = losses[-1]
        extra = "".join(f", {label} {last[key]:.3f}" for key, label in (("semantic_cos", "RVQ-1/teacher cosine"), ("phoneme_ctc", "phoneme CTC"))
                        if key in last)
        label = "waveform multi-scale mel L1" if metric == "wave_l1" else "mel L1"
        print(f"done: step {last['step']}, {label} {losses[0][metric]:.3f} -> {last[metric]:.3f}{extra}")
    final = os.path.join(args.out, "final")
    if run.trainable == "generator" and run.adapt.codes:
        from engine.perceptual.flow_model import ADAPTED_DECODER_FILE

        print(f"the decoder adapted to the flow model's output is in {os.path.join(final, ADAPTED_DECODER_FILE)}: "
              "copy it into that flow model's folder (perceptual.flow.path), where it is loaded with the model")
    else:
        print(f"codec written to {final}")
    return 0
