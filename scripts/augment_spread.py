"""How far speed perturbation moves a voice (docs/demo.md, "More training voices").

For every training voice of a demo corpus: the resemblyzer centroid of a few utterances, and of their
speed-perturbed copies (``engine.demo.augment.speed_perturb``); prints the similarity of each voice to
its own copies, per factor, against the similarity of two different original voices.

    .venv/bin/python scripts/augment_spread.py --corpus data/demo_corpus --speeds 0.85 0.92 1.08 1.16 --per-voice 4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="data/demo_corpus")
    parser.add_argument("--speeds", type=float, nargs="+", default=[0.85, 0.92, 1.08, 1.16])
    parser.add_argument("--per-voice", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import soundfile as sf
    import torch

    from engine.demo.augment import speed_perturb
    from engine.eval.speaker import load_speaker_encoder
    from engine.train.extract import corpus_manifest_path, read_corpus_rows, select_split

    torch.set_num_threads(1)
    encoder = load_speaker_encoder("resemblyzer")
    base = corpus_manifest_path(args.corpus).parent
    train, _ = select_split(read_corpus_rows(args.corpus), "train")
    rng = np.random.default_rng(args.seed)
    speeds = [1.0] + list(args.speeds)
    centroids: dict[tuple[str, float], np.ndarray] = {}
    for voice in sorted({r["voice"] for r in train}):
        rows = [r for r in train if r["voice"] == voice]
        pick = [rows[i] for i in rng.choice(len(rows), min(args.per_voice, len(rows)), replace=False)]
        audio = [sf.read(str(base / r["path"]), dtype="int16")[0] for r in pick]
        for s in speeds:
            embs = [encoder.embed((a if s == 1.0 else speed_perturb(a, s)).astype(np.float32) / 32768) for a in audio]
            c = np.mean(embs, axis=0)
            centroids[(voice, s)] = c / np.linalg.norm(c)
    voices = sorted({v for v, _ in centroids})

    def sim(a: tuple[str, float], b: tuple[str, float]) -> float:
        return float(centroids[a] @ centroids[b])

    for s in args.speeds:
        x = [sim((v, 1.0), (v, s)) for v in voices]
        print(f"original vs its x{s:g} copy: mean {np.mean(x):.3f} (min {np.min(x):.3f}, max {np.max(x):.3f})")
    other = [sim((a, 1.0), (b, 1.0)) for a in voices for b in voices if a != b]
    print(f"two different original voices: mean {np.mean(other):.3f} (min {np.min(other):.3f}, max {np.max(other):.3f})")
    copies = [(v, s) for v in voices for s in args.speeds]
    own = sum(max(voices, key=lambda o: sim(c, (o, 1.0))) == c[0] for c in copies)
    print(f"copies whose nearest original voice is their own: {own} of {len(copies)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
