"""Would k-means units of the semantic teacher keep more of the words than the demo codec's RVQ-1?
(docs/demo.md, "Where the words are lost".)

The same linear CTC phoneme probe as ``eval phonemes`` (engine.eval.phoneme_probe: fitted on
training-voice utterances, scored on the held-out voices' test utterances, greedy PER) on:

- ``teacher``: Whisper tiny.en's encoder features themselves (384-d, 50 Hz; the codec's teacher),
- ``teacher k-means``: each teacher frame replaced by its nearest of K centroids fitted on the teacher
  frames of other training utterances (HuBERT-style units, as SpeechTokenizer's RVQ-1 imitates),
- ``codec RVQ-1``: the embeddings of the profile's codec's RVQ-1 (what the flow and semantic models see),

- ``codec latent``: the codec encoder's output before the quantiser (what RVQ-1 quantises), and that
  latent re-quantised by K-means centroids fitted on the same training utterances as the teacher's
  (does RVQ-1 lose the words in the encoder, or in a codebook that uses few of its codes?),

each also as a lookup of unit ids (one-hot: what a model that sees only the unit ids can read off),
with the unit statistics (codes used, perplexity, frames per run).

    .venv/bin/python scripts/teacher_units_probe.py --corpus data/demo_corpus --profile demo --units 1024
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def unit_stats(units: list) -> str:
    """Codes used, perplexity and mean run length of unit sequences (lists of 1-D int tensors)."""
    import torch

    flat = torch.cat(units)
    counts = torch.bincount(flat).float()
    p = counts[counts > 0] / counts.sum()
    runs = sum(int((u[1:] != u[:-1]).sum()) + 1 for u in units)
    return f"{int((counts > 0).sum())} codes used, perplexity {math.exp(float(-(p * p.log()).sum())):.0f}, {flat.numel() / runs:.2f} frames per run"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="data/demo_corpus")
    parser.add_argument("--profile", default="demo", help="the codec to compare with (its RVQ-1)")
    parser.add_argument("--units", type=int, default=1024, help="k-means centroids")
    parser.add_argument("--kmeans-utterances", type=int, default=80, help="training utterances per voice for k-means (not the probe's)")
    parser.add_argument("--kmeans-frames", type=int, default=200_000, help="frames sampled for k-means")
    parser.add_argument("--train-per-voice", type=int, default=30)
    parser.add_argument("--test-per-voice", type=int, default=20)
    parser.add_argument("--steps", type=int, default=600, help="probe training steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch
    import torch.nn.functional as F

    from engine.audio import load_audio
    from engine.codec import Codec
    from engine.config import load_config
    from engine.eval.codec_eval import pick_items, read_split_items, read_test_items
    from engine.eval.phoneme_probe import error_rate, train_probe
    from engine.melcodec.model import _nearest, kmeans
    from engine.train.phonemes import build_inventory, encode_ipa, ensure_phonemes
    from engine.melcodec.whisper import WhisperEncoder

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    train_all = [i for i in read_split_items(args.corpus, "train") if i.text]
    train = pick_items(train_all, args.train_per_voice, args.seed)
    test = pick_items(read_test_items(args.corpus, heldout_voices_only=True), args.test_per_voice, args.seed)
    probe_ids = {i.id for i in train}
    km_items = pick_items([i for i in train_all if i.id not in probe_ids], args.kmeans_utterances, args.seed + 1)
    ipa = ensure_phonemes(args.corpus, {i.id: i.text for i in train + test})
    inventory = build_inventory(ipa[u.id] for u in train)
    y_train = [encode_ipa(ipa[u.id], inventory) for u in train]
    y_test = [encode_ipa(ipa[t.id], inventory) for t in test]
    print(f"probe: {len(train)} training-voice utterances, {len(test)} held-out test utterances, {len(inventory)} phonemes; "
          f"k-means on {len(km_items)} other training utterances")

    teacher = WhisperEncoder(threads=args.threads)
    wavs = {}

    def teach(items) -> list:
        out = []
        for item in items:
            wavs[item.id] = load_audio(item.path)
            out.append(torch.from_numpy(teacher.encode(wavs[item.id])))
        return out

    km_feats = teach(km_items)
    frames = torch.cat(km_feats)
    gen = torch.Generator().manual_seed(args.seed)
    if frames.shape[0] > args.kmeans_frames:
        frames = frames[torch.randperm(frames.shape[0], generator=gen)[: args.kmeans_frames]]
    t1 = time.perf_counter()
    centroids, _ = kmeans(frames, args.units, 25, gen)
    print(f"teacher features of {len(km_items)} utterances and k-means ({frames.shape[0]} frames, K {args.units}): "
          f"{time.perf_counter() - t0:.0f} s (k-means {time.perf_counter() - t1:.0f} s)")

    tr_teacher, te_teacher = teach(train), teach(test)
    tr_units = [_nearest(f, centroids) for f in tr_teacher]
    te_units = [_nearest(f, centroids) for f in te_teacher]
    codec = Codec.from_config(load_config(args.profile).codec, device="cpu")
    enc = {i.id: codec.encode(wavs[i.id]) for i in train + test}
    tr_codes = [enc[i.id].codes[0].long().flatten() for i in train]
    te_codes = [enc[i.id].codes[0].long().flatten() for i in test]
    tr_rvq1 = [enc[i.id].semantic_emb.float() for i in train]
    te_rvq1 = [enc[i.id].semantic_emb.float() for i in test]
    book = max(int(torch.cat(tr_codes + te_codes).max()) + 1, 1024)

    def latent(item) -> torch.Tensor:
        """The codec encoder's output [T, D] before the quantiser."""
        wav = torch.as_tensor(wavs[item.id], dtype=torch.float32)
        frames = enc[item.id].codes.shape[-1] if item.id in enc else -(-wav.numel() // 320)
        padded = torch.zeros(1, 1, frames * 320)
        padded[0, 0, : wav.numel()] = wav
        with torch.no_grad():
            return codec.model.encoder(padded.to(codec.device, codec.dtype)).float()[0].t().cpu()

    tr_lat, te_lat = [latent(i) for i in train], [latent(i) for i in test]
    km_lat = torch.cat([latent(i) for i in km_items])
    if km_lat.shape[0] > args.kmeans_frames:
        km_lat = km_lat[torch.randperm(km_lat.shape[0], generator=gen)[: args.kmeans_frames]]
    lat_centroids, _ = kmeans(km_lat, args.units, 25, gen)
    tr_lu, te_lu = [_nearest(x, lat_centroids) for x in tr_lat], [_nearest(x, lat_centroids) for x in te_lat]

    def per(tr: list, te: list) -> float:
        probe = train_probe(tr, y_train, len(inventory), steps=args.steps, seed=args.seed)
        with torch.no_grad():
            return error_rate([probe(x) for x in te], y_test)

    def onehot(units: list, k: int) -> list:
        return [F.one_hot(u, k).float() for u in units]

    rows = [
        ("teacher features (384-d)", per(tr_teacher, te_teacher), ""),
        (f"teacher k-means units, centroid vectors (K {args.units})", per([centroids[u] for u in tr_units], [centroids[u] for u in te_units]),
         unit_stats(te_units)),
        (f"teacher k-means units, one-hot (K {args.units})", per(onehot(tr_units, args.units), onehot(te_units, args.units)), ""),
        (f"codec RVQ-1 embeddings ({codec.name})", per(tr_rvq1, te_rvq1), unit_stats(te_codes)),
        (f"codec RVQ-1 codes, one-hot ({codec.name})", per(onehot(tr_codes, book), onehot(te_codes, book)), ""),
        (f"codec latent before the quantiser ({codec.name}, {tr_lat[0].shape[1]}-d)", per(tr_lat, te_lat), ""),
        (f"codec latent k-means units, centroid vectors (K {args.units})", per([lat_centroids[u] for u in tr_lu], [lat_centroids[u] for u in te_lu]),
         unit_stats(te_lu)),
        (f"codec latent k-means units, one-hot (K {args.units})", per(onehot(tr_lu, args.units), onehot(te_lu, args.units)), ""),
    ]
    print("\n| input to the linear CTC probe | PER, held-out voices | units on the test utterances |\n|---|---|---|")
    for name, value, stats in rows:
        print(f"| {name} | {value * 100:.1f} % | {stats} |")
    print(f"\n{time.perf_counter() - t0:.0f} s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
