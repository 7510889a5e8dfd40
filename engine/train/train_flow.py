"""Training of the flow-matching perceptual model on extracted codes (see engine.train.codes_data)."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from engine.codec import Codec
from engine.perceptual.flow_model import FlowModel, FlowModelConfig
from engine.train.codes_data import CodesDataset, LengthBucketSampler, collate_codes, read_meta, split_ids
from engine.train.trainer import TrainConfig, Trainer

log = logging.getLogger(__name__)


@dataclass
class FlowModelSpec:
    """Which model to train (the feature width comes from the codec)."""

    size: str = "base"  # tiny | base | large
    chain: str = "implicit"  # implicit | explicit
    concat_semantic: bool = False
    sigma_min: float = 0.0
    max_prompt_frames: int = 300
    prompt_dropout: float = 0.1  # enables classifier-free guidance on the voice prompt
    prior_space: str = "standardized"  # standardized | raw: where the prior's N(zs, I) lives (FlowModelConfig)
    time_embedding: str = "raw"  # raw | sinusoidal (FlowModelConfig)


@dataclass
class FlowTrainConfig:
    model: FlowModelSpec = field(default_factory=FlowModelSpec)
    train: TrainConfig = field(default_factory=TrainConfig)
    stats_utterances: int = 500  # utterances used for the feature mean/std
    # continue from a saved flow model folder (weights and feature statistics; fresh optimiser and
    # schedule): a longer run after a shipped one, or a new schedule. Its architecture must match.
    init_from: str = ""
    # allow init_from a model trained on another codec's codes (e.g. demo codec v2 -> v3): its weights
    # are the start, the feature statistics are computed afresh on this run's codes
    init_other_codec: bool = False


class CodebookEmbedder:
    """codes [B, 8, T] -> (complete, semantic) embeddings [B, T, D] by codebook lookup on any device."""

    def __init__(self, codebooks: Tensor):
        self.codebooks = codebooks  # [8, C, D]
        self._per_device: dict[torch.device, Tensor] = {}

    def __call__(self, codes: Tensor) -> tuple[Tensor, Tensor]:
        books = self._per_device.get(codes.device)
        if books is None:
            books = self._per_device[codes.device] = self.codebooks.to(codes.device)
        per_layer = torch.stack([books[l][codes[:, l]] for l in range(codes.shape[1])])  # [8, B, T, D]
        return per_layer.sum(0), per_layer[0]


def feature_stats(dataset: CodesDataset, embed: CodebookEmbedder, limit: int) -> tuple[Tensor, Tensor]:
    """Per-dimension mean/std of the complete embedding over up to ``limit`` utterances."""
    total, sq, count = None, None, 0
    for i in range(min(len(dataset), limit)):
        complete, _ = embed(dataset[i][None])
        x = complete[0].double()
        total = x.sum(0) if total is None else total + x.sum(0)
        sq = (x**2).sum(0) if sq is None else sq + (x**2).sum(0)
        count += x.shape[0]
    mean = total / count
    std = (sq / count - mean**2).clamp(min=1e-10).sqrt()
    return mean.float(), std.float()


def build_model(spec: FlowModelSpec, codec: Codec) -> FlowModel:
    cfg = FlowModelConfig.preset(
        spec.size, feature_dim=codec.dim, codec=codec.name, chain=spec.chain, concat_semantic=spec.concat_semantic,
        sigma_min=spec.sigma_min, max_prompt_frames=spec.max_prompt_frames, prompt_dropout=spec.prompt_dropout,
        prior_space=spec.prior_space, time_embedding=spec.time_embedding,
    )
    return FlowModel(cfg)


def train_flow(run: FlowTrainConfig, codec: Codec, data_dir: str | Path, out_dir: str | Path, resume: bool = False, progress: bool = True) -> list[dict]:
    """Train and export to ``out_dir/final`` (config.yaml + model.safetensors)."""
    data_codec = read_meta(data_dir).get("codec")
    if data_codec is not None and data_codec != codec.name:
        raise ValueError(f"{data_dir} was extracted with the {data_codec!r} codec but training uses {codec.name!r}")
    tc = run.train
    train_ids, valid_ids = split_ids(data_dir, tc.valid_fraction, tc.seed)
    train_set = CodesDataset(data_dir, train_ids, min_frames=2, max_frames=tc.max_frames, seed=tc.seed)
    if not len(train_set):
        raise ValueError(f"no training utterances of at least 2 frames in {data_dir}")
    valid_set = CodesDataset(data_dir, valid_ids, min_frames=2, max_frames=tc.max_frames, random_crop=False) if valid_ids else None
    sampler = LengthBucketSampler(train_set.lengths(), tc.batch_frames, seed=tc.seed)
    # its own generator: starting an epoch must not draw from the global RNG (exact resume)
    train_loader = torch.utils.data.DataLoader(train_set, batch_sampler=sampler, collate_fn=collate_codes, num_workers=tc.num_workers,
                                               generator=torch.Generator().manual_seed(tc.seed))
    valid_loader = None
    if valid_set is not None and len(valid_set):
        vs = LengthBucketSampler(valid_set.lengths(), tc.batch_frames, shuffle=False)
        valid_loader = torch.utils.data.DataLoader(valid_set, batch_sampler=vs, collate_fn=collate_codes)
    embed = CodebookEmbedder(codec.codebooks())
    torch.manual_seed(tc.seed)  # the same initial weights for the same config, whatever ran before
    model = build_model(run.model, codec)
    fresh = not (resume and any(Path(out_dir, "checkpoints").glob("step-*")))
    if fresh and run.init_from:
        load_init(model, run.init_from, codec, other_codec=run.init_other_codec)
    if fresh and (not run.init_from or run.init_other_codec):
        mean, std = feature_stats(train_set, embed, run.stats_utterances)
        model.set_feature_stats(mean, std)

    def loss_fn(m: FlowModel, batch: dict) -> tuple[Tensor, dict]:
        complete, semantic = embed(batch["codes"])  # [B, T, D] each
        return m.loss(complete, semantic, batch["lengths"], generator=batch.get("generator"))

    trainer = Trainer(
        model, train_loader, valid_loader, tc, out_dir, loss_fn,
        export_fn=lambda m, folder: m.save_pretrained(folder),
        run_config={"codec": codec.name, **{f"model.{k}": v for k, v in dataclasses.asdict(run.model).items()}},
    )
    if resume and not trainer.resume():
        log.warning("--resume: no checkpoint in %s, starting %s", out_dir, f"from {run.init_from}" if run.init_from else "from scratch")
    return trainer.fit(progress=progress)


def load_init(model: FlowModel, folder: str | Path, codec: Codec, other_codec: bool = False) -> None:
    """Weights and feature statistics of the saved flow model in ``folder`` into ``model`` (the same
    architecture, codec and chain; anything else is refused with the fields that differ). With
    ``other_codec`` a model of another codec of the same width is accepted (its statistics are then
    the caller's to replace)."""
    saved = FlowModel.from_pretrained(folder, codec=None if other_codec else codec.name, device="cpu")
    ours, theirs = dataclasses.asdict(model.cfg), dataclasses.asdict(saved.cfg)
    skip = ("prompt_dropout", "codec") if other_codec else ("prompt_dropout",)
    differ = sorted(k for k in ours if k not in skip and ours.get(k) != theirs.get(k))
    if differ:
        raise ValueError(f"init_from {folder}: its model differs from the training config in {differ}; "
                         "train a new model, or use the same model settings")
    model.load_state_dict(saved.state_dict())
    log.info("initialised from %s", folder)


def export_checkpoint(checkpoint: str | Path, codec: Codec, out_dir: str | Path, weights: str = "ema") -> Path:
    """A training checkpoint (``RUN/checkpoints/step-N``) in the inference format (``config.yaml`` +
    ``model.safetensors``), with its EMA weights (``weights="ema"``) or the trained weights
    themselves (``"raw"``). The model is rebuilt from ``RUN/run_config.json``."""
    import json

    from safetensors.torch import load_file

    checkpoint = Path(checkpoint)
    if weights not in ("ema", "raw"):
        raise ValueError(f"unknown weights {weights!r}; use ema or raw")
    run_config = checkpoint.parent.parent / "run_config.json"
    if not (checkpoint / "model.safetensors").is_file() or not run_config.is_file():
        raise FileNotFoundError(f"{checkpoint} is not a train-flow checkpoint (expected model.safetensors there and {run_config})")
    recorded = json.loads(run_config.read_text())
    if recorded.get("codec") not in (None, codec.name):
        raise ValueError(f"{checkpoint} was trained on the {recorded['codec']!r} codec, not {codec.name!r}: pass the matching --profile/--set codec.path")
    spec = FlowModelSpec(**{k.removeprefix("model."): v for k, v in recorded.items() if k.startswith("model.")})
    model = build_model(spec, codec)
    state = {k.removeprefix("model."): v for k, v in load_file(checkpoint / "model.safetensors").items()}  # the trainer's wrapper adds "model."
    model.load_state_dict(state, strict=True)
    if weights == "ema":
        if not (checkpoint / "ema.pt").is_file():
            raise FileNotFoundError(f"{checkpoint} has no EMA weights (trained with ema_decay 0): export with weights=raw")
        shadow = {k.removeprefix("model."): v for k, v in torch.load(checkpoint / "ema.pt", weights_only=True).items()}
        params = dict(model.named_parameters())
        if set(shadow) != {k for k, p in params.items() if p.requires_grad}:
            raise ValueError(f"the EMA weights in {checkpoint} do not match the model's parameters")
        with torch.no_grad():
            for k, value in shadow.items():
                params[k].copy_(value.to(params[k].dtype))
    return model.save_pretrained(out_dir)
