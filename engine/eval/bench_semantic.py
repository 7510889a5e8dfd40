"""Semantic LLM speed: tokens per second and time to first unit, for the configured model and precision.

Real time needs at least 50 units per second (RVQ-1 runs at 50 Hz). ``--random-arch`` measures a
randomly initialised LLaMA of a public shape instead (speed depends on shape and precision, not on
the weights), for machines that cannot download the checkpoint.

``--compare`` times our decode loop and transformers' ``generate()`` on the same model, prompt,
sampling settings and number of new tokens, interleaved in one run (the order alternates each
round, so a steady background load weighs on both alike), and ends with
``ratio vs transformers generate: X.XXx`` (the median of our rates over the median of theirs).
``generate()`` samples from the whole vocabulary (a plain call has no speech-span constraint).
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
    parser.add_argument("--compare", action="store_true", help="also time transformers generate() side by side and print the ratio")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: pipeline.cpu_threads)")
    parser.add_argument("--decoder", choices=["auto", "static", "eager"], default=None, help="override semantic.decoder")
    parser.add_argument("--compile", choices=["auto", "on", "off"], default=None, help="override semantic.compile")
    parser.add_argument("--fuse", choices=["auto", "on", "off"], default=None, help="override semantic.fuse (fused layer weights)")
    parser.add_argument("--half-matmul", choices=["auto", "on", "off"], default=None,
                        help="override semantic.half_matmul (fused layers' projections in float16)")


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
    import os

    from engine.semantic.model import SemanticModel
    from engine.threads import apply_cpu_threads

    threads = apply_cpu_threads(args.threads if args.threads is not None else config.pipeline.cpu_threads)
    cfg = config.semantic
    if args.decoder:
        cfg = replace(cfg, decoder=args.decoder)
    if args.compile:
        cfg = replace(cfg, compile=args.compile)
    if args.fuse:
        cfg = replace(cfg, fuse=args.fuse)
    if args.half_matmul:
        cfg = replace(cfg, half_matmul=args.half_matmul)
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
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch CPU threads: {threads}; load average {load:.2f}; sampling: temperature {sampling.temperature:g}, "
          f"top-p {sampling.top_p:g}, repetition penalty {sampling.repetition_penalty:g}")
    if args.compare:
        return _compare(model, args, sampling)
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


def _decoder_label(model) -> str:
    static = model._static
    if model.cfg.decoder == "eager" or static is None:
        return "eager loop"
    return f"static cache, {'compiled' if static.compiled else 'eager'} step, {_layers_label(static.fused)} layers, host sync every {static.sync_every}"


def _layers_label(fused) -> str:
    if fused is None:
        return "module"
    return "fused (float16 projections)" if fused.half else "fused"


def _compare(model, args: argparse.Namespace, sampling) -> int:
    """Our loop vs ``generate()``: the same prompt ids, sampling settings and new-token count per round."""
    import statistics

    import torch

    family = model.family
    bos = [model.tokenizer.bos_token_id] if model.tokenizer.bos_token_id is not None else []
    prompt_ids = bos + model._ids(family.tts_prompt(args.text) + family.tts_scaffold()[0])  # what our loop feeds first
    prompt = torch.tensor([prompt_ids], device=model.device)
    sync = torch.cuda.synchronize if model.device.type == "cuda" else (lambda: None)

    def ours() -> tuple[int, float]:
        sync()
        start = time.perf_counter()
        count = sum(len(chunk) for chunk in model.stream_speak(args.text, sampling))
        sync()
        return count + (1 if count < args.units else 0), time.perf_counter() - start  # + the sampled <eosp>, if any

    def theirs(n: int) -> tuple[int, float]:
        greedy = sampling.temperature <= 0
        kwargs = dict(do_sample=False) if greedy else dict(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        torch.manual_seed(0)
        sync()
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, min_new_tokens=n,
                                       repetition_penalty=sampling.repetition_penalty, pad_token_id=model.tokenizer.eos_token_id, **kwargs)
        sync()
        return out.shape[1] - prompt.shape[1], time.perf_counter() - start

    n, _ = ours()  # warm-up (and compile, where on); then the token count generate() must match
    theirs(n)
    print(f"decoder: {_decoder_label(model)}; prompt {len(prompt_ids)} tokens, {n} new tokens per run")
    print(f"{'round':>5s} {'ours tok/s':>11s} {'generate tok/s':>15s}")
    rates: dict[str, list[float]] = {"ours": [], "generate": []}
    for r in range(max(args.repeats, 1)):
        order = ("ours", "generate") if r % 2 == 0 else ("generate", "ours")
        for who in order:
            if who == "ours":
                count, took = ours()
            else:
                count, took = theirs(n)
            rates[who].append(count / took)
        print(f"{r + 1:5d} {rates['ours'][-1]:11.1f} {rates['generate'][-1]:15.1f}", flush=True)
    a, b = statistics.median(rates["ours"]), statistics.median(rates["generate"])
    print(f"median tokens/s (prompt included): ours {a:.1f}, transformers generate {b:.1f}")
    print(f"ratio vs transformers generate: {a / b:.2f}x")
    return 0
