"""Semantic LLM speed: tokens per second and time to first unit, for the configured model and precision.

Real time needs at least 50 units per second (RVQ-1 runs at 50 Hz). ``--random-arch`` measures a
randomly initialised LLaMA of a public shape instead (speed depends on shape and precision, not on
the weights), for machines that cannot download the checkpoint.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace

# LLaMA shapes for --random-arch (hidden, intermediate, layers, heads, base vocabulary)
ARCHS = {
    "llama2-7b": (4096, 11008, 32, 32, 32000),  # LLaMA-2-7B: AnyGPT and SpeechGPT-Gen's base
    "llama-160m": (768, 3072, 12, 12, 32000),  # a small LLaMA, for CPU figures
    "tiny": (64, 128, 2, 4, 0),
}


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text", default="The quick brown fox jumps over the lazy dog near the quiet river bank.")
    parser.add_argument("--units", type=int, default=250, help="speech units to generate per run at most (250 = 5 s)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quant", choices=["none", "4bit"], default=None, help="override semantic.quant")
    parser.add_argument("--dtype", choices=["auto", "float32", "float16", "bfloat16"], default=None, help="override semantic.dtype")
    parser.add_argument("--random-arch", choices=sorted(ARCHS), default=None, help="time a random LLaMA of this shape (speed only)")


def random_checkpoint(arch: str, family: str, folder: str) -> str:
    """Write a random LLaMA of shape ``arch`` with our tokenizer (family tokens added) to ``folder``."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from engine.semantic.tokenizer import build_tokenizer

    hidden, inter, layers, heads, base_vocab = ARCHS[arch]
    tokenizer = build_tokenizer(family)
    vocab = max(len(tokenizer), base_vocab + len(tokenizer) - 259)  # base vocabulary + the added tokens
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=heads, max_position_embeddings=4096, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False)
    dtype = torch.float16 if hidden > 1024 else torch.float32
    with torch.random.fork_rng(devices=[]), torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)  # initialised where it runs (a 7B in seconds on a GPU)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def run(args: argparse.Namespace, config) -> int:
    """Load the model once, then time ``repeats`` TTS generations (after a warm-up run)."""
    from engine.semantic.model import SemanticModel

    cfg = config.semantic
    if args.quant:
        cfg = replace(cfg, quant=args.quant)
    if args.dtype:
        cfg = replace(cfg, dtype=args.dtype)
    # the TTS scaffold writes " <sosp>" itself; 4 tokens of the budget are kept for closing it
    sampling = replace(cfg.sampling, max_new_tokens=args.units + 4, seed=0)
    device = cfg.device if cfg.device != "auto" else config.pipeline.device
    with tempfile.TemporaryDirectory() as tmp:
        if args.random_arch:
            print(f"random {args.random_arch} weights (speed only; the units are meaningless)")
            cfg = replace(cfg, random_init=False, path=random_checkpoint(args.random_arch, cfg.family, tmp))
        t0 = time.perf_counter()
        model = SemanticModel.from_config(replace(cfg, unit_chunk=1), device=device)
        load_s = time.perf_counter() - t0
    params = sum(p.numel() for p in model.model.parameters())
    print(f"model: {model.name} ({cfg.family}, {params / 1e6:.1f} M parameters), device {model.device}, "
          f"dtype {next(model.model.parameters()).dtype}, quant {cfg.quant}; loaded in {load_s:.1f} s")
    print(f"{'run':>4s} {'units':>6s} {'first unit s':>13s} {'tokens/s':>9s} {'real time':>10s}")
    for i in range(max(args.repeats, 1) + 1):
        start = time.perf_counter()
        first = None
        count = 0
        for chunk in model.stream_speak(args.text, sampling):
            if first is None:
                first = time.perf_counter() - start
            count += len(chunk)
        total = time.perf_counter() - start
        rate = (count - 1) / max(total - (first or 0), 1e-9) if count > 1 else 0.0  # decode rate after the first unit
        label = "warm" if i == 0 else str(i)
        print(f"{label:>4s} {count:6d} {first or float('nan'):13.3f} {rate:9.1f} {'yes' if rate >= 50 else 'no':>10s}", flush=True)
    return 0
