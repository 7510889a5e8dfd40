"""Training of the SoundStorm perceptual baseline on extracted codes (see engine.train.codes_data).

The loss is ``SoundStorm.loss`` (masked-token cross-entropy: random prompt prefix, random RVQ
level, cosine masking ratio, loss on the masked positions of that level). The model learns from
codes alone, so the codec is only loaded to initialise the token embeddings from its codebooks
(when the widths match; it speeds up training) and its name is taken from the data folder.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from engine.errors import ConfigError
from engine.perceptual.soundstorm import SoundStorm, SoundStormModelConfig
from engine.train.codes_data import CodesDataset, LengthBucketSampler, collate_codes, read_meta, split_ids
from engine.train.trainer import TrainConfig, Trainer

log = logging.getLogger(__name__)


@dataclass
class SoundStormModelSpec:
    """Which model to train."""

    size: str = "base"  # tiny | small | base (base = the AnyGPT checkpoint's size)
    mode: str = "soundstorm"  # generation variant written into the exported config
    init_from: str | None = None  # start from a checkpoint: our folder or a public .pt file (fine-tuning)
    init_from_codec: bool = True  # copy the codec's codebooks into the token embeddings when widths match


@dataclass
class SoundStormTrainConfig:
    model: SoundStormModelSpec = field(default_factory=SoundStormModelSpec)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=6e-4, warmup_steps=4000, max_frames=750))

    @classmethod
    def preset(cls, size: str) -> "SoundStormTrainConfig":
        """Defaults per model size; ``tiny`` trains in seconds on a CPU (tests, smoke runs)."""
        run = cls(model=SoundStormModelSpec(size=size))
        if size == "tiny":
            run.train = TrainConfig(
                max_steps=400, lr=3e-3, warmup_steps=20, batch_frames=400, max_frames=200, ema_decay=0.0,
                mixed_precision="no", log_every=20, eval_every=0, save_every=0, valid_fraction=0.0, num_workers=0,
            )
        return run


def data_codec(data_dir: str | Path, fallback: str | None) -> str:
    """The codec name recorded by ``extract`` in the data folder (``fallback`` when absent)."""
    name = read_meta(data_dir).get("codec") or fallback
    if not name:
        raise ConfigError(f"{data_dir}/meta.json names no codec; pass the app profile whose codec extracted the data")
    return str(name)


def build_model(spec: SoundStormModelSpec, codec_name: str) -> SoundStorm:
    """A new model of ``spec.size``, or the ``spec.init_from`` checkpoint (its codec must match)."""
    if spec.init_from:
        model = SoundStorm.from_pretrained(spec.init_from, codec=codec_name)
        model.cfg.mode = spec.mode
        return model.train()
    return SoundStorm(SoundStormModelConfig.preset(spec.size, mode=spec.mode, codec=codec_name))


@torch.no_grad()
def init_embeddings_from_codebooks(model: SoundStorm, codebooks: Tensor) -> bool:
    """RVQ-1 codebook -> semantic embedding, RVQ-2..8 codebooks -> token embeddings (mask rows zero).
    codebooks [8, C, D]. Returns False (and changes nothing) when the shapes do not fit."""
    cfg = model.cfg
    q, c, d = cfg.num_quantizers, cfg.codebook_size, cfg.backbone.dim
    if tuple(codebooks.shape) != (q + 1, c, d) or cfg.num_semantic_ids != c:
        return False
    model.semantic_emb.weight.copy_(codebooks[0])
    table = torch.cat([codebooks[1:], torch.zeros(q, 1, d, dtype=codebooks.dtype)], dim=1)  # [Q, C+1, D]
    model.code_embeds.weight.copy_(table.reshape(q * (c + 1), d))
    return True


def train_soundstorm(
    run: SoundStormTrainConfig,
    data_dir: str | Path,
    out_dir: str | Path,
    codec_name: str | None = None,
    codebooks: Tensor | None = None,
    resume: bool = False,
    progress: bool = True,
) -> list[dict]:
    """Train and export to ``out_dir/final`` (config.yaml + model.safetensors); returns the log.

    ``codec_name``: the codec the data must come from (checked against the data folder's meta);
    ``codebooks`` [8, C, D]: the codec's codebooks for ``init_from_codec``."""
    name = data_codec(data_dir, codec_name)
    if codec_name is not None and name != codec_name:
        raise ConfigError(f"{data_dir} was extracted with the {name!r} codec but training uses {codec_name!r}")
    tc = run.train
    train_ids, valid_ids = split_ids(data_dir, tc.valid_fraction, tc.seed)
    train_set = CodesDataset(data_dir, train_ids, min_frames=2, max_frames=tc.max_frames)
    if not len(train_set):
        raise ConfigError(f"no training utterances of at least 2 frames in {data_dir}")
    sampler = LengthBucketSampler(train_set.lengths(), tc.batch_frames, seed=tc.seed)
    train_loader = torch.utils.data.DataLoader(train_set, batch_sampler=sampler, collate_fn=collate_codes, num_workers=tc.num_workers)
    valid_loader = None
    if valid_ids:
        valid_set = CodesDataset(data_dir, valid_ids, min_frames=2, max_frames=tc.max_frames)
        if len(valid_set):
            vs = LengthBucketSampler(valid_set.lengths(), tc.batch_frames, shuffle=False)
            valid_loader = torch.utils.data.DataLoader(valid_set, batch_sampler=vs, collate_fn=collate_codes)

    torch.manual_seed(tc.seed)
    model = build_model(run.model, name)
    if not run.model.init_from and run.model.init_from_codec and codebooks is not None:
        if init_embeddings_from_codebooks(model, codebooks):
            log.info("token embeddings initialised from the codec's codebooks")
        else:
            log.info("codec codebooks %s do not fit the model width %d: random token embeddings", tuple(codebooks.shape), model.cfg.backbone.dim)

    def loss_fn(m, batch: dict) -> tuple[Tensor, dict]:
        inner = m.module if hasattr(m, "module") else m
        return inner.loss(batch["codes"], batch["lengths"], generator=batch.get("generator"))

    trainer = Trainer(
        model, train_loader, valid_loader, tc, out_dir, loss_fn,
        export_fn=lambda m, folder: m.save_pretrained(folder),
        run_config={"model": "soundstorm", "codec": name, **{f"model.{k}": v for k, v in dataclasses.asdict(run.model).items()}},
    )
    if resume and not trainer.resume():
        log.warning("--resume: no checkpoint in %s, starting from scratch", out_dir)
    return trainer.fit(progress=progress)
