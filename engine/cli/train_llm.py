"""Semantic LLM data, fine-tuning and training from scratch: python -m engine train-llm build-data|run [options]

  build-data --codes DIR --out FILE             TTS/ASR records straight from an extraction folder
  run --model scratch:SIZE --config YAML ...    a small LLaMA trained from scratch (sizes: tiny, small, demo, base)
  run --model HUB_ID_OR_FOLDER ...              fine-tune an existing LM (full or LoRA)"""

from __future__ import annotations

import argparse

from engine.cli.common import add_config_args, config_from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine train-llm", description=__doc__,
                                     epilog="Many GPUs: accelerate launch --config_file assets/configs/accelerate/zero3.yaml -m engine train-llm run ...")
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build-data", help="cross-modal and chain-of-modality instruction JSONL from audio corpora or extracted codes")
    b.add_argument("--codes", metavar="DIR", help="an extraction folder (`python -m engine extract`): TTS and ASR records from its RVQ-1 "
                                                   "codes and transcripts, no audio is encoded")
    b.add_argument("--manifest", metavar="CORPUS", help="with --codes: the demo corpus it came from (default: found from the index's "
                                                          "source paths); only its train rows can enter")
    b.add_argument("--text-units", choices=["chars", "phonemes"], default=None,
                   help="with --codes: how the TTS input text is written (default: --train-config's model.text_units, else chars)")
    b.add_argument("--train-config", metavar="YAML", help="with --codes: a train-llm YAML whose model.text_units / family / espeak_voice to use")
    b.add_argument("--pairs", help="(audio, transcript) pairs: TSV audio<TAB>text or JSONL {audio, text}")
    b.add_argument("--triples", help="JSONL {question_audio, question_text, answer_text, answer_audio}")
    b.add_argument("--out", required=True, help="output JSONL")
    b.add_argument("--family", choices=["speechgpt_gen", "anygpt"], default=None, help="prompt family (default speechgpt_gen)")
    b.add_argument("--seed", type=int, default=0)
    add_config_args(b)
    r = sub.add_parser("run", help="fine-tune (full or LoRA), or train from scratch (--model scratch:SIZE / --config), on a built JSONL")
    r.add_argument("--model", default=None, help="base LM (hub id or folder), 'tiny' for a random test model, or scratch:SIZE "
                                                 "(a new LLaMA of that size: tiny | small | demo | base; overrides the YAML's model.size)")
    r.add_argument("--config", default=None, help="from scratch: training YAML (assets/configs/train/llm_demo.yaml); "
                                                  "its options replace the fine-tuning ones below")
    r.add_argument("--train-set", dest="train_overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="from scratch: override the training YAML, e.g. --train-set train.lr=1e-3")
    r.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: the default)")
    r.add_argument("--quiet", action="store_true", help="from scratch: no progress bar")
    r.add_argument("--data", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--family", choices=["speechgpt_gen", "anygpt"], default="speechgpt_gen")
    r.add_argument("--epochs", type=float, default=3.0)
    r.add_argument("--max-steps", type=int, default=-1)
    r.add_argument("--lr", type=float, default=2e-5)
    r.add_argument("--batch-size", type=int, default=4)
    r.add_argument("--grad-accum", type=int, default=1)
    r.add_argument("--max-length", type=int, default=1024)
    r.add_argument("--warmup-steps", type=int, default=100)
    r.add_argument("--lora", action="store_true", help="LoRA adapters (merged into the saved model)")
    r.add_argument("--bf16", action="store_true", help="bf16 weights and mixed precision (GPU)")
    r.add_argument("--gradient-checkpointing", action="store_true", help="trade compute for memory (7B models)")
    r.add_argument("--save-steps", type=int, default=500)
    r.add_argument("--logging-steps", type=int, default=10)
    r.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    r.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.cmd == "build-data" and args.codes:
        return _build_from_codes(parser, args)
    if args.cmd == "build-data":
        if args.manifest or args.text_units or args.train_config:
            parser.error("--manifest, --text-units and --train-config go with --codes")
        args.family = args.family or "speechgpt_gen"
        from engine.codec import Codec
        from engine.semantic.prompts import prompt_family
        from engine.train.llm_data import build_data

        cfg = config_from_args(args)
        codec = Codec.from_config(cfg.codec, device=cfg.pipeline.device)
        counts = build_data(prompt_family(args.family), codec, args.out, args.pairs, args.triples, args.seed)
        print(f"wrote {args.out}: " + ", ".join(f"{n} {task}" for task, n in counts.items()))
        return 0

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.config or (args.model or "").startswith("scratch:"):
        return _run_scratch(r, args)
    if args.model is None:
        parser.error("give --model (a base LM to fine-tune, or scratch:SIZE) or --config (a from-scratch training YAML)")
    from engine.train.llm_finetune import FinetuneConfig, finetune

    cfg = FinetuneConfig(model=args.model, family=args.family, epochs=args.epochs, max_steps=args.max_steps, lr=args.lr,
                         batch_size=args.batch_size, grad_accum=args.grad_accum, max_length=args.max_length, lora=args.lora, warmup_steps=args.warmup_steps,
                         bf16=args.bf16, seed=args.seed, gradient_checkpointing=args.gradient_checkpointing, save_steps=args.save_steps,
                         logging_steps=args.logging_steps, resume=args.resume)
    history = finetune(cfg, args.data, args.out)
    losses = [h["loss"] for h in history if "loss" in h]
    if losses:
        print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    print(f"model written to {args.out} (use it with --set semantic.path={args.out} --set semantic.family={args.family})")
    return 0


def _scratch_config(path: str | None, overrides: list[str]):
    from engine.config import from_dict, merge, parse_override, read_yaml
    from engine.train.llm_scratch import ScratchTrainConfig

    data = read_yaml(path) if path else {}
    for text in overrides:
        data = merge(data, parse_override(text))
    return from_dict(ScratchTrainConfig, data)


def _build_from_codes(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    import logging

    from engine.semantic.frontend import TextFrontEnd
    from engine.semantic.prompts import prompt_family
    from engine.train.llm_data import codes_records, write_records

    if args.pairs or args.triples:
        parser.error("--codes builds from an extraction folder; give --pairs/--triples in a separate build")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    spec = _scratch_config(args.train_config, []).model if args.train_config else None
    family = args.family or (spec.family if spec else "speechgpt_gen")
    units = args.text_units or (spec.text_units if spec else "chars")
    frontend = TextFrontEnd(units, spec.espeak_voice if spec else "en-us")
    records, report = codes_records(prompt_family(family), args.codes, frontend, args.manifest, args.seed)
    if not records:
        raise SystemExit(f"error: no usable utterance in {args.codes} ({report['not_train']} not in the train split, {report['no_text']} without text)")
    counts = write_records(records, args.out)
    print(f"{report['kept']} of {report['utterances']} utterances used ({report['not_train']} not in the train split, "
          f"{report['no_text']} without text; split checked against {report['manifest'] or 'nothing: no manifest found'})")
    print(f"wrote {args.out} (text_units {units}): " + ", ".join(f"{n} {task}" for task, n in counts.items()))
    return 0


def _run_scratch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``run`` from scratch (``parser``: the ``run`` sub-parser, whose fine-tuning options must stay at their defaults)."""
    import logging
    import os

    from engine.train.llm_scratch import train_scratch

    fine_tune_only = {"family": "model.family", "epochs": "train.max_steps", "lr": "train.lr", "batch_size": "data.batch_tokens",
                      "grad_accum": "train.grad_accum", "max_length": "data.max_tokens", "warmup_steps": "train.warmup_steps",
                      "lora": None, "bf16": "train.mixed_precision", "gradient_checkpointing": None, "save_steps": "train.save_every",
                      "logging_steps": "train.log_every", "seed": "train.seed"}
    for name, key in fine_tune_only.items():
        if getattr(args, name) != parser.get_default(name):
            flag = "--" + name.replace("_", "-")
            parser.error(f"{flag} is a fine-tuning option; training from scratch takes its settings from the YAML"
                         + (f" (use --train-set {key}=...)" if key else " (not available from scratch)"))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run = _scratch_config(args.config, args.train_overrides)
    if args.model is not None:
        if not args.model.startswith("scratch:"):
            parser.error(f"--config trains from scratch; --model must be scratch:SIZE, not {args.model!r}")
        run.model.size = args.model.split(":", 1)[1]
    if args.max_steps is not None and args.max_steps > 0:
        run.train.max_steps = args.max_steps
    history = train_scratch(run, args.data, args.out, resume=args.resume, progress=not args.quiet)
    losses = [h["loss"] for h in history if "loss" in h]
    if losses:
        print(f"done: step {history[-1].get('step', '?')}, first loss {losses[0]:.4f}, last loss {losses[-1]:.4f}")
    final = os.path.join(args.out, "final")
    print(f"model written to {final} (use it with --set semantic.path={final} --set semantic.family={run.model.family})")
    return 0
