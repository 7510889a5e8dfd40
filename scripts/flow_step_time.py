"""Seconds per optimiser step of a flow training config, measured with the real trainer.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/flow_step_time.py assets/configs/train/flow_demo.yaml --threads 1

Random codes of the config's crop length (``train.max_frames``) are packed into the config's
``train.batch_frames``, and a random codec of the demo codec's shape (``--dim`` wide embeddings,
1024 codes per layer) provides the codebooks: the compute per step is that of the real run. The
first ``--warmup`` steps are not counted. Prints the step time and the schedule that fits a budget.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="flow training YAML")
    parser.add_argument("--steps", type=int, default=8, help="steps timed after the warm-up (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default %(default)s)")
    parser.add_argument("--dim", type=int, default=256, help="codec embedding width (demo codec: 256)")
    parser.add_argument("--budget-hours", type=float, default=2.0, help="training time the schedule should fit")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override the YAML")
    args = parser.parse_args()

    import numpy as np
    import torch

    from engine.codec import Codec
    from engine.config import from_dict, merge, parse_override, read_yaml
    from engine.melcodec import MelCodecConfig, MelCodecModel
    from engine.train.codes_data import ShardWriter
    from engine.train.train_flow import FlowTrainConfig, build_model, train_flow

    torch.set_num_threads(args.threads)
    data = read_yaml(args.config)
    for text in args.overrides:
        data = merge(data, parse_override(text))
    run = from_dict(FlowTrainConfig, data)
    tc = run.train
    codec = Codec(MelCodecModel(MelCodecConfig(name="bench", channels=16, enc_blocks=1, dec_blocks=1, dimension=args.dim)), name="bench")
    frames = tc.max_frames
    per_batch = max(tc.batch_frames // frames, 1)
    total = args.warmup + args.steps
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        writer = ShardWriter(Path(tmp) / "codes", "bench", shard_size=1000)
        for i in range(per_batch * (total + 1)):
            writer.add(f"u{i:05d}", rng.integers(0, 1024, (8, frames)))
        writer.close()
        tc.max_steps, tc.log_every, tc.eval_every, tc.save_every = total, 1, 0, 0
        tc.valid_fraction, tc.num_workers = 0.0, 0
        run.stats_utterances = 20
        start = time.perf_counter()
        history = train_flow(run, codec, Path(tmp) / "codes", Path(tmp) / "run", progress=False)
        wall = time.perf_counter() - start
    logged = [h for h in history if "elapsed_s" in h]
    timed = logged[args.warmup - 1:] if args.warmup >= 1 else logged
    step_s = (timed[-1]["elapsed_s"] - timed[0]["elapsed_s"]) / max(len(timed) - 1, 1)
    params = sum(p.numel() for p in build_model(run.model, codec).parameters())
    budget = args.budget_hours * 3600
    print(json.dumps({
        "config": args.config, "size": run.model.size, "parameters_M": round(params / 1e6, 2), "threads": args.threads,
        "cuda": torch.cuda.is_available(), "batch_frames": tc.batch_frames, "utterances_per_batch": per_batch, "crop_frames": frames,
        "step_s": round(step_s, 3), "frames_per_s": round(per_batch * frames / step_s, 1),
        "steps_in_budget": int(budget / step_s), "budget_hours": args.budget_hours, "wall_s": round(wall, 1),
    }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
