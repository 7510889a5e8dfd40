"""How far speed perturbation, or a new pitch and vocal tract, moves a voice (docs/demo.md, "More training voices").

For every training voice of a demo corpus: the resemblyzer centroid of a few utterances, and of their
speed-perturbed copies (``engine.demo.augment.speed_perturb``); prints the similarity of each voice to
its own copies, per factor, against the similarity of two different original voices. With
``--new-voices N``: the same for the first N voices that ``demo augment --new-voices`` plans (same
seed), each made from the utterances of its base voice.

    .venv/bin/python scripts/augment_spread.py --corpus data/demo_corpus --speeds 0.85 0.92 1.08 1.16 --per-voice 4
    .venv/bin/python scripts/augment_spread.py --corpus data/demo_corpus --speeds --new-voices 160 --per-voice 4
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
    parser.add_argument("--speeds", type=float, nargs="*", default=[0.85, 0.92, 1.08, 1.16])
    parser.add_argument("--new-voices", type=int, default=0, help="also score this many planned new voices")
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
    sources: dict[str, list[np.ndarray]] = {}
    for voice in sorted({r["voice"] for r in train}):
        rows = [r for r in train if r["voice"] == voice]
        pick = [rows[i] for i in rng.choice(len(rows), min(args.per_voice, len(rows)), replace=False)]
        audio = [sf.read(str(base / r["path"]), dtype="int16")[0] for r in pick]
        sources[voice] = audio
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
    if copies:
        own = sum(max(voices, key=lambda o: sim(c, (o, 1.0))) == c[0] for c in copies)
        print(f"copies whose nearest original voice is their own: {own} of {len(copies)}")
    if args.new_voices:
        from engine.demo.augment import plan_new_voices
        from engine.demo.corpus import condition_audio
        from engine.demo.voice_shift import shift_voice

        to_base, to_other, nearest_own, between = [], [], 0, []
        new_centroids = []
        for voice, _ in plan_new_voices(train, args.new_voices, 4.0, args.seed):
            audio = sources[voice.base]
            embs = [encoder.embed(condition_audio(shift_voice(a / 32768.0, voice.pitch, voice.formant, voice.tilt_db), 16000)
                                  .astype(np.float32) / 32768) for a in audio]
            c = np.mean(embs, axis=0)
            c = c / np.linalg.norm(c)
            new_centroids.append(c)
            sims = {v: float(c @ centroids[(v, 1.0)]) for v in voices}
            to_base.append(sims[voice.base])
            to_other.append(max(s for v, s in sims.items() if v != voice.base))
            nearest_own += max(sims, key=sims.get) == voice.base
        for i in range(len(new_centroids)):
            for j in range(i + 1, len(new_centroids)):
                between.append(float(new_centroids[i] @ new_centroids[j]))
        print(f"new voice vs its base voice: mean {np.mean(to_base):.3f} (min {np.min(to_base):.3f}, max {np.max(to_base):.3f}); "
              f"vs the nearest other original voice: mean {np.mean(to_other):.3f}")
        print(f"two new voices: mean {np.mean(between):.3f} (max {np.max(between):.3f}); "
              f"new voices whose nearest original voice is their base: {nearest_own} of {len(new_centroids)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
