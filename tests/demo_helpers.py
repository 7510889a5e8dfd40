"""A small corpus in the `python -m engine demo corpus` layout and a tiny demo (mel) codec, built in code."""

from __future__ import annotations

import json
from pathlib import Path

import soundfile as sf
import torch

from audio_helpers import voiced

HELDOUT_VOICES = ("hv_one", "hv_two", "hv_three")
TRAIN_VOICES = ("tv_a", "tv_b")
SENTENCES = {f"s{k}": f"sentence number {k} is spoken here" for k in range(5)}
HELDOUT_SENTENCES = {"s4"}


def write_demo_corpus(root: Path, heldout_seconds: float = 3.6, train_seconds: float = 0.5) -> Path:
    """Two training voices and three held-out ones reading five sentences (``s4`` held out), in the
    demo corpus's layout and split rules, plus two *mislabelled* rows marked ``train`` that name a
    held-out voice or a held-out sentence (extraction must keep them out all the same)."""
    rows = []

    def add(voice: str, sid: str, split: str, seconds: float, heldout_voice: bool, heldout_sentence: bool, seed: int) -> None:
        rel = f"{voice}/{voice}-{sid}.wav"
        (root / voice).mkdir(parents=True, exist_ok=True)
        f0 = 100.0 + 25.0 * (sum(map(ord, voice)) % 7)
        sf.write(root / rel, voiced(seconds, f0=f0, seed=seed), 16000)
        rows.append({"id": f"{voice}-{sid}", "path": rel, "voice": voice, "speaker": voice, "engine": "test", "licence": "test",
                     "text": SENTENCES[sid], "raw_text": SENTENCES[sid], "sentence_id": sid, "source": "generated",
                     "duration": seconds, "sample_rate": 16000, "split": split, "heldout_voice": heldout_voice,
                     "heldout_sentence": heldout_sentence})

    seed = 0
    for voice in TRAIN_VOICES:
        for sid in SENTENCES:
            held = sid in HELDOUT_SENTENCES
            add(voice, sid, "test" if held else "train", train_seconds, False, held, seed)
            seed += 1
    for v, voice in enumerate(HELDOUT_VOICES):
        for k, sid in enumerate(SENTENCES):
            add(voice, sid, "test", heldout_seconds + 0.1 * k + 0.05 * v, True, sid in HELDOUT_SENTENCES, seed)
            seed += 1
    # mislabelled rows: a held-out voice reading a training sentence, a training voice reading s4 again
    add("hv_one", "s0", "train", train_seconds, False, False, 99)
    rows[-1]["id"] = "hv_one-s0-dup"
    add("tv_a", "s4", "train", train_seconds, False, False, 98)
    rows[-1]["id"] = "tv_a-s4-dup"
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root


def save_tiny_mel_codec(folder: Path, dimension: int = 16):
    """A randomly initialised demo codec (kind "mel", name "demo-tiny") saved to ``folder``; returns the Codec."""
    from engine.codec import Codec
    from engine.melcodec import MelCodecConfig, MelCodecModel
    from engine.melcodec.model import set_codebooks

    cfg = MelCodecConfig(name="demo-tiny", channels=32, enc_blocks=1, dec_blocks=1, dimension=dimension, codebook_size=16)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = MelCodecModel(cfg)
        set_codebooks(model, torch.randn(400, dimension), batch_frames=400)
    codec = Codec(model, name="demo-tiny")
    codec.save_pretrained(folder)
    return Codec.from_pretrained(folder, weights_file="model.safetensors")
