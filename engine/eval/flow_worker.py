"""One side of a side-by-side flow-sampler benchmark, run in its own process (engine.eval.bench_perceptual).

Run as ``python flow_worker.py CHECKOUT DIM DEPTH HEADS FEATURE_DIM THREADS COMPILE DEVICE DTYPE``: it imports ``engine``
from CHECKOUT (so that two checkouts, e.g. today's branch and an older commit, can be timed against
each other in one run), builds a flow model with random weights under seed 0, then answers one line
per request on stdin: ``TARGET PROMPT STEPS METHOD OUT_PATH`` -> it generates once, saves the output
tensor to OUT_PATH and prints the seconds the call took. Only the public ``FlowModel`` API is used, so
any checkout that has it can be measured; COMPILE 1 calls ``FlowModel.enable_compile`` where the
checkout has it (0: eager); DEVICE (cpu, cuda) and DTYPE (float32, bfloat16...) place the network. This file imports nothing from the engine at module level.
"""

from __future__ import annotations

import sys
import time


def main(argv: list[str]) -> int:
    """Serve timing requests until stdin closes."""
    checkout, dim, depth, heads, feature_dim, threads, compile_ = argv[0], *map(int, argv[1:7])
    device_name, dtype_name = argv[7], argv[8]
    sys.path[0] = checkout  # instead of this file's folder (its module names must not shadow packages)
    import torch

    torch.set_num_threads(threads)
    import engine
    from engine.perceptual.conformer import ConformerConfig
    from engine.perceptual.flow_model import FlowModel, FlowModelConfig

    torch.manual_seed(0)
    cfg = FlowModelConfig(feature_dim=feature_dim, backbone=ConformerConfig(dim=dim, depth=depth, heads=heads, unet=True), codec="bench")
    device = torch.device(device_name)
    model = FlowModel(cfg).to(device).eval()
    if dtype_name != "float32":
        model.cast_weights(getattr(torch, dtype_name))
    compiled = bool(compile_) and hasattr(model, "enable_compile")
    if compiled:
        model.enable_compile("reduce-overhead" if device.type == "cuda" else "default")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    gen = torch.Generator().manual_seed(1)
    print(f"ready {engine.__file__} {torch.get_num_threads()} {'compiled' if compiled else 'eager'}", flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        target, prompt, steps, method, out_path = line.split()
        t, p = int(target), int(prompt)
        gen.manual_seed(1)  # the same inputs on both sides and on every call
        sem, pc, ps = (torch.randn(n, feature_dim, generator=gen) for n in (t, p, p))
        sync()
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate([sem], [pc], [ps], steps=int(steps), method=method, seed=0)
        sync()
        took = time.perf_counter() - start
        torch.save(out[0], out_path)
        print(f"{took:.6f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
