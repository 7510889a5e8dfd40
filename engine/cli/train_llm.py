"""Semantic LLM data and fine-tuning: python -m engine train-llm build-data|run [options]"""

from __future__ import annotations

import argparse

from engine.cli.common import add_config_args, config_from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine train-llm", description=__doc__,
                                     epilog="Many GPUs: accelerate launch --config_file assets/configs/accelerate/zero3.yaml -m engine train-llm run ...")
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build-data", help="cross-modal and chain-of-modality instruction JSONL from audio corpora")
    b.add_argument("--pairs", help="(audio, transcript) pairs: TSV audio<TAB>text or JSONL {audio, text}")
    b.add_argument("--triples", help="JSONL {question_audio, question_text, answer_text, answer_audio}")
    b.add_argument("--out", required=True, help="output JSONL")
    b.add_argument("--family", choices=["speechgpt_gen", "anygpt"], default="speechgpt_gen")
    b.add_argument("--seed", type=int, default=0)
    add_config_args(b)
    r = sub.add_parser("run", help="fine-tune (full or LoRA) on a built JSONL")
    r.add_argument("--model", required=True, help="base LM (hub id or folder), or 'tiny' for a random test model")
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

    if args.cmd == "build-data":
        from engine.codec import Codec
        from engine.semantic.prompts import prompt_family
        from engine.train.llm_data import build_data

        cfg = config_from_args(args)
        codec = Codec.from_config(cfg.codec, device=cfg.pipeline.device)
        counts = build_data(prompt_family(args.family), codec, args.out, args.pairs, args.triples, args.seed)
        print(f"wrote {args.out}: " + ", ".join(f"{n} {task}" for task, n in counts.items()))
        return 0

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
