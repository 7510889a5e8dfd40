"""Speed of the flow-matching perceptual model: time per call and real-time factor per size and NFE,
for a 10 s target + 3 s prompt (random weights: speed does not depend on them).

RTF = seconds per call / seconds of target audio (below 1 is faster than real time). NFE is the
number of network evaluations per call: with ``--solver euler`` one per step, with ``midpoint`` two.
Rows whose estimated time exceeds ``--max-row-seconds`` are reported as skipped, not run.

``--compare-with CHECKOUT`` instead times this checkout's sampler against another checkout's (e.g.
``git worktree add ../base COMMIT``) on one shape, each in a worker process (engine.eval.flow_worker)
with the same weights and inputs, interleaved, and ends with ``ratio vs CHECKOUT: X.XXx``.
"""

from __future__ import annotations

import argparse
import time

import torch

FEATURE_DIM = 1024  # SpeechTokenizer embedding width


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="tiny,base", help="comma list of tiny, small, base, large")
    parser.add_argument("--nfe", default="1,2,4,8,16,32", help="comma list of function evaluations per call")
    try:  # `python -m engine bench` already offers --device with its config options
        parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, auto (default: the config's pipeline.device)")
    except argparse.ArgumentError:
        pass
    parser.add_argument("--solver", choices=["euler", "midpoint"], default=None,
                        help="euler: NFE = steps; midpoint: NFE = 2 x steps (default: euler for the table, midpoint with --compare-with)")
    parser.add_argument("--target-seconds", type=float, default=10.0)
    parser.add_argument("--prompt-seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per row (the best one is reported)")
    parser.add_argument("--max-row-seconds", type=float, default=0.0, help="skip rows estimated to take longer (0: run all)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None, help="default: bf16 on CUDA, float32 on CPU")
    parser.add_argument("--compile", choices=["auto", "on", "off"], default="auto", help="torch.compile the network (auto: on CUDA only)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: pipeline.cpu_threads)")
    parser.add_argument("--compare-with", default=None, metavar="CHECKOUT",
                        help="time this checkout's sampler against another checkout's (e.g. a git worktree of an older commit), side by side, "
                             "with --arch, --steps, --solver (default midpoint), --device (default cpu; cuda: bfloat16, compiled unless --compile off)")
    parser.add_argument("--arch", default="256,6,4", help="with --compare-with: dim,layers,heads (default: the golden-fixture shape)")
    parser.add_argument("--steps", type=int, default=16, help="with --compare-with: ODE steps")
    parser.add_argument("--rounds", type=int, default=3, help="with --compare-with: interleaved timed rounds")


def run(args: argparse.Namespace, config) -> int:
    """Print one row per size and NFE: parameters, seconds per call, real-time factor."""
    from engine.codec import resolve_device
    from engine.perceptual.flow_model import SIZES, FlowModel, FlowModelConfig
    from engine.threads import apply_cpu_threads

    threads = apply_cpu_threads(args.threads if args.threads is not None else config.pipeline.cpu_threads)
    if args.compare_with:
        from engine.codec import Codec

        dim, depth, heads = (int(v) for v in args.arch.split(","))
        where = resolve_device(getattr(args, "device", None) or "cpu")
        cuda = where.type == "cuda"
        compare(args.compare_with, dim, depth, heads, int(args.target_seconds * Codec.frame_rate), int(args.prompt_seconds * Codec.frame_rate),
                args.steps, args.solver or "midpoint", args.rounds, threads, compile_ours=args.compile == "on" or (args.compile == "auto" and cuda),
                device=str(where), dtype=args.dtype or ("bfloat16" if cuda else "float32"))
        return 0
    args.solver = args.solver or "euler"
    device = resolve_device(getattr(args, "device", None) or config.pipeline.device)
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        raise SystemExit(f"unknown size(s) {', '.join(unknown)}; choose from {', '.join(SIZES)}")
    nfes = [int(n) for n in args.nfe.split(",") if n.strip()]
    if args.solver == "midpoint" and any(n % 2 for n in nfes):
        raise SystemExit("with --solver midpoint every NFE must be even (two evaluations per step)")
    from engine.codec import Codec

    t_frames, p_frames = int(args.target_seconds * Codec.frame_rate), int(args.prompt_seconds * Codec.frame_rate)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{threads} CPU threads"
    print(f"device: {device} ({where}), dtype {str(dtype).replace('torch.', '')}, "
          f"{args.target_seconds:g} s target + {args.prompt_seconds:g} s prompt, solver {args.solver}")
    print(f"{'size':6s} {'params':>8s} {'NFE':>4s} {'s/call':>9s} {'RTF':>8s}")
    for size in sizes:
        torch.manual_seed(0)
        model = FlowModel(FlowModelConfig.preset(size, feature_dim=FEATURE_DIM, codec="bench")).to(device).eval().cast_weights(dtype)
        if args.compile == "on" or (args.compile == "auto" and device.type == "cuda"):
            model.enable_compile("reduce-overhead" if device.type == "cuda" else "default")
        params = sum(p.numel() for p in model.parameters()) / 1e6
        # the network runs in `dtype` (as the pipeline's perceptual.flow.dtype); the ODE state stays float32
        sem = torch.randn(t_frames, FEATURE_DIM)
        pc = torch.randn(p_frames, FEATURE_DIM)
        ps = torch.randn(p_frames, FEATURE_DIM)

        def call(nfe: int) -> float:
            steps = nfe if args.solver == "euler" else nfe // 2
            _sync(device)
            start = time.perf_counter()
            with torch.inference_mode():
                model.generate([sem], [pc], [ps], steps=steps, method=args.solver, seed=0)
            _sync(device)
            return time.perf_counter() - start

        call(min(nfes) if args.solver == "euler" else 2)  # warm-up (kernels, allocator)
        per_nfe = None
        for nfe in nfes:
            if args.max_row_seconds > 0 and per_nfe is not None:
                estimate = per_nfe * nfe * max(args.repeats, 1)
                if estimate > args.max_row_seconds:
                    print(f"{size:6s} {params:7.1f}M {nfe:4d}  skipped: ~{per_nfe * nfe:.1f} s/call estimated "
                          f"(row > --max-row-seconds {args.max_row_seconds:g})", flush=True)
                    continue
            best = min(call(nfe) for _ in range(max(args.repeats, 1)))
            per_nfe = best / nfe
            print(f"{size:6s} {params:7.1f}M {nfe:4d} {best:9.4f} {best / args.target_seconds:8.4f}", flush=True)
        del model
    return 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------ side by side
def compare(other: str, dim: int, depth: int, heads: int, target: int, prompt: int, steps: int, method: str, rounds: int, threads: int,
            compile_ours: bool = False, device: str = "cpu", dtype: str = "float32") -> float:
    """Time this checkout's flow sampler against the one in checkout ``other``, interleaved in one run.

    Each side runs in its own worker process (engine.eval.flow_worker) with the same random weights,
    inputs and thread count; rounds alternate the order (ABBA) so that a steady background load
    weighs on both alike. Prints both medians and returns the ratio (other / ours: > 1 is faster)."""
    import os
    import statistics
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    worker = Path(__file__).with_name("flow_worker.py")
    ours = str(Path(__file__).resolve().parents[2])
    sides = {"this checkout": ours, "other": str(Path(other).resolve())}
    procs = {}
    for name, root in sides.items():
        flag = "1" if compile_ours and name == "this checkout" else "0"
        procs[name] = subprocess.Popen([sys.executable, str(worker), root, str(dim), str(depth), str(heads), str(FEATURE_DIM), str(threads), flag,
                                        device, dtype],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = procs[name].stdout.readline().split()
        if not ready or ready[0] != "ready":
            raise SystemExit(f"the {name} worker ({root}) did not start")
        print(f"{name}: engine from {ready[1]}, {ready[2]} threads, {ready[3]} network")
    times: dict[str, list[float]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory() as tmp:
        def call(name: str) -> float:
            out = os.path.join(tmp, name.replace(" ", "_") + ".pt")
            procs[name].stdin.write(f"{target} {prompt} {steps} {method} {out}\n")
            procs[name].stdin.flush()
            return float(procs[name].stdout.readline())

        for name in sides:  # warm-up (allocator, kernels, compiled graphs)
            call(name)
        order = list(sides)
        for r in range(rounds):
            for name in (order if r % 2 == 0 else order[::-1]):
                times[name].append(call(name))
            print(f"round {r + 1}: " + ", ".join(f"{n} {times[n][-1]:.3f} s" for n in sides), flush=True)
        a, b = (torch.load(os.path.join(tmp, n.replace(" ", "_") + ".pt")) for n in sides)
        diff = float((a - b).abs().max())
    for proc in procs.values():
        proc.stdin.close()
        proc.wait(timeout=60)
    med = {n: statistics.median(t) for n, t in times.items()}
    ratio = med["other"] / med["this checkout"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"flow model dim {dim}, {depth} layers, {heads} heads, {device} {dtype}; {target} target + {prompt} prompt frames, {steps} {method} steps")
    print(f"median s/call: this checkout {med['this checkout']:.3f}, other {med['other']:.3f} "
          f"({rounds} interleaved rounds, {threads} threads, load average {load:.2f}); max |output difference| {diff:.2e}")
    print(f"ratio vs {other}: {ratio:.2f}x")
    return ratio
