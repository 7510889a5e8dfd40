"""Speed of the flow-matching perceptual model: time per call and real-time factor per size and NFE,
for a 10 s target + 3 s prompt (random weights: speed does not depend on them)."""

from __future__ import annotations

import argparse
import time

import torch

FRAME_RATE = 50


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="tiny,base", help="comma list of tiny, base, large")
    parser.add_argument("--nfe", default="1,2,4,8,16,32", help="comma list of function evaluations per call")
    parser.add_argument("--solver", choices=["euler", "midpoint"], default="euler", help="euler: NFE = steps; midpoint: NFE = 2 x steps")
    parser.add_argument("--target-seconds", type=float, default=10.0)
    parser.add_argument("--prompt-seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None, help="default: bf16 on CUDA, float32 on CPU")


def run(args: argparse.Namespace, config) -> int:
    from engine.codec import resolve_device
    from engine.perceptual.flow_model import FlowModel, FlowModelConfig

    device = resolve_device(config.pipeline.device)
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    feature_dim = 1024
    t_frames, p_frames = int(args.target_seconds * FRAME_RATE), int(args.prompt_seconds * FRAME_RATE)
    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} CPU threads'}), "
          f"dtype {str(dtype).replace('torch.', '')}, {args.target_seconds:g} s target + {args.prompt_seconds:g} s prompt, solver {args.solver}")
    print(f"{'size':6s} {'params':>8s} {'NFE':>4s} {'s/call':>9s} {'RTF':>8s}")
    for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
        torch.manual_seed(0)
        model = FlowModel(FlowModelConfig.preset(size, feature_dim=feature_dim, codec="bench")).to(device, dtype).eval()
        params = sum(p.numel() for p in model.parameters()) / 1e6
        sem = torch.randn(t_frames, feature_dim, device=device, dtype=dtype)
        pc = torch.randn(p_frames, feature_dim, device=device, dtype=dtype)
        ps = torch.randn(p_frames, feature_dim, device=device, dtype=dtype)
        for nfe in [int(n) for n in args.nfe.split(",") if n.strip()]:
            steps = nfe if args.solver == "euler" else max(nfe // 2, 1)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                model.generate([sem], [pc], [ps], steps=steps, method=args.solver, seed=0)  # warm-up
                _sync(device)
                times = []
                for _ in range(max(args.repeats, 1)):
                    start = time.perf_counter()
                    model.generate([sem], [pc], [ps], steps=steps, method=args.solver, seed=0)
                    _sync(device)
                    times.append(time.perf_counter() - start)
            best = min(times)
            print(f"{size:6s} {params:7.1f}M {nfe:4d} {best:9.4f} {best / args.target_seconds:8.4f}", flush=True)
    return 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
