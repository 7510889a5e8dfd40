"""Perceptual-model outputs for adapting the codec's decoder to them.

The decoder was trained on the codec's own quantised latents; at synthesis it decodes what the flow
model generates from RVQ-1 units and a voice prompt, which is smoother than any sum of codebook
vectors (at the demo profile's two Euler steps, close to the model's conditional mean). This is the
mismatch that Tacotron 2 removed by training its vocoder on predicted, ground-truth-aligned mels.
Here the same: for each training utterance the flow model generates the complete embedding from the
utterance's own RVQ-1 units and a 3 s prompt cut from *another* utterance of the same voice (as at
inference, where the prompt never is the target), frame-aligned with the recording, so the decoder
can learn to turn that output into the recording's mel (``train-codec`` with ``trainable: decoder``
and ``adapt``). The codes do not change: every model trained on them stays valid.

Outputs are cached like teacher features (engine.train.teacher: float16 parts, resumable).
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from engine.train.teacher import TeacherCache, build_teacher_cache

log = logging.getLogger(__name__)


@dataclass
class AdaptConfig:
    """``train-codec`` decoder adaptation to a perceptual model's output (off while ``codes`` is empty)."""

    codes: str = ""          # `extract` codes folder of the corpus's training split, made by the codec being adapted
    profile: str = "demo"    # the profile whose codec and flow model (with its steps and solver) make the outputs
    overrides: list[str] = field(default_factory=list)  # key=value settings over the profile, e.g. perceptual.flow.path=runs/x/final
    cache: str = ""          # folder for the outputs ("": OUT/decoder_inputs)
    share: float = 0.5       # share of a batch's items decoded from the flow output (the rest: the codec's own quantised latent)
    fraction: float = 0.5    # share of the training utterances that get a flow output (by a stable hash of the id); only these train
    prompt_seconds: float = 3.0
    seed: int = 0


@dataclass
class _Job:
    tokens: torch.Tensor   # RVQ-1 units [T]
    prompt: object         # engine.perceptual.base.Prompt
    seed: int


class _FlowOutputs:
    """``encode_batch`` for the feature cache: each job -> the perceptual model's complete embedding [T, D]."""

    def __init__(self, perceptual):
        self.perceptual = perceptual

    def encode_batch(self, jobs: list[_Job]) -> list[np.ndarray]:
        return [self.perceptual.generate(j.tokens, j.prompt, seed=j.seed).numpy() for j in jobs]


def build_decoder_inputs(adapt: AdaptConfig, ids: list[str], folder: str | Path, codec_name: str, progress: bool = True) -> TeacherCache:
    """The flow model's complete embedding for each utterance in ``ids`` (those in ``adapt.codes``),
    cached in ``folder`` (resumable). ``codec_name``: the codec being adapted; the codes and the
    profile must both be its."""
    from engine.config import load_config
    from engine.perceptual.base import Prompt
    from engine.pipeline import Engine
    from engine.train.codes_data import CodesDataset, read_meta

    meta = read_meta(adapt.codes)
    if not meta:
        raise FileNotFoundError(f"adapt.codes: {adapt.codes} has no meta.json; run `python -m engine extract` into it first")
    if meta.get("codec") != codec_name:
        raise ValueError(f"adapt.codes holds {meta.get('codec')!r} codes, the codec being adapted is {codec_name!r}")
    config = load_config(adapt.profile, overrides=adapt.overrides)
    if config.codec.name != codec_name:
        raise ValueError(f"profile {adapt.profile!r} runs the {config.codec.name!r} codec, the codec being adapted is {codec_name!r}")
    if config.perceptual.kind != "flow":
        raise ValueError(f"profile {adapt.profile!r} has no flow model (perceptual.kind: {config.perceptual.kind})")
    engine = Engine(config)
    codec, perceptual = engine.codec, engine.perceptual("flow")
    data = CodesDataset(adapt.codes, random_crop=False)
    by_id = {e.id: i for i, e in enumerate(data.entries)}
    by_voice: dict[str, list[int]] = defaultdict(list)
    for i, e in enumerate(data.entries):
        by_voice[e.speaker or ""].append(i)
    prompt_frames = max(1, round(adapt.prompt_seconds * codec.frame_rate))
    wanted = [uid for uid in ids if uid in by_id]
    if len(wanted) < len(ids):
        log.warning("%d of %d utterances are not in %s and get no flow output", len(ids) - len(wanted), len(ids), adapt.codes)

    def job(uid: str):
        def load() -> _Job:
            i = by_id[uid]
            rng = random.Random(f"{adapt.seed}-{uid}")
            others = [j for j in by_voice[data.entries[i].speaker or ""] if j != i] or [i]
            p = data[rng.choice(others)]  # [8, P]
            start = rng.randint(0, max(p.shape[1] - prompt_frames, 0))
            prompt = Prompt.from_codes(p[:, start : start + prompt_frames], codec)
            return _Job(data[i][0], prompt, rng.randrange(2**31))  # the flow's noise seed: also a function of (seed, id)
        return uid, load

    wanted.sort(key=lambda uid: (data.entries[by_id[uid]].frames, uid))
    with torch.inference_mode():
        return build_teacher_cache((job(uid) for uid in wanted), folder, teacher=_FlowOutputs(perceptual), progress=progress,
                                   name=f"flow:{Path(config.perceptual.flow.path or '').name}", dim=codec.dim, desc="flow outputs")
