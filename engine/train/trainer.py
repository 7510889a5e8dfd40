"""A generic ``accelerate`` training loop for the perceptual models.

The same command runs on a CPU, one GPU, or many GPUs/nodes under ``accelerate launch``.
Features: bf16 mixed precision on GPUs, AdamW, warm-up + cosine/linear decay, gradient clipping,
EMA weights, validation loss, TensorBoard logs, periodic checkpoints and ``--resume``.
The model plugs in through ``loss_fn(model, batch) -> (loss, logs)`` and ``export_fn(model, folder)``.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, dict], tuple[Tensor, dict]]
ExportFn = Callable[[nn.Module, Path], None]


@dataclass
class TrainConfig:
    max_steps: int = 200_000
    lr: float = 1e-4
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.98
    warmup_steps: int = 2000
    decay: str = "cosine"  # cosine | linear | constant
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    grad_accum: int = 1
    batch_frames: int = 12_000  # total (padded) frames per batch and device
    max_frames: int = 1500  # longer utterances are randomly cropped (30 s)
    ema_decay: float = 0.9999  # 0 disables EMA
    mixed_precision: str = "auto"  # auto (bf16 on CUDA, none on CPU) | bf16 | fp16 | no
    log_every: int = 50
    eval_every: int = 2000
    save_every: int = 5000
    keep_checkpoints: int = 3
    valid_fraction: float = 0.01
    num_workers: int = 2
    seed: int = 0


def lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    def fn(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / max(cfg.warmup_steps, 1)
        if cfg.decay == "constant":
            return 1.0
        progress = min((step - cfg.warmup_steps) / max(cfg.max_steps - cfg.warmup_steps, 1), 1.0)
        shape = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.decay == "cosine" else 1 - progress
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * shape

    return fn


class EMA:
    """Exponential moving average of the trainable parameters (kept in float32)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: p.detach().float().clone() for k, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for k, p in model.named_parameters():
            if k in self.shadow:
                self.shadow[k].lerp_(p.detach().float(), 1 - self.decay)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        for k, p in model.named_parameters():
            if k in self.shadow:
                p.copy_(self.shadow[k].to(p.dtype))


class Trainer:
    def __init__(
        self,
        model: nn.Module,
        train_loader,
        valid_loader,
        cfg: TrainConfig,
        out_dir: str | Path,
        loss_fn: LossFn,
        export_fn: ExportFn,
        run_config: dict | None = None,
    ):
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        self.cfg = cfg
        self.out = Path(out_dir)
        mp = cfg.mixed_precision
        if mp == "auto":
            mp = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
        log_with = "tensorboard" if _has_tensorboard() else None
        self.acc = Accelerator(mixed_precision=mp, gradient_accumulation_steps=cfg.grad_accum, log_with=log_with, project_dir=str(self.out))
        set_seed(cfg.seed)
        self.loss_fn, self.export_fn = loss_fn, export_fn
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
        self.model, self.opt, self.train_loader, self.sched = self.acc.prepare(model, opt, train_loader, sched)
        self.valid_loader = valid_loader
        self.ema = EMA(self.acc.unwrap_model(self.model), cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.step = 0
        self.history: list[dict] = []
        if self.acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            if run_config is not None:
                (self.out / "run_config.json").write_text(json.dumps(run_config, indent=2, default=str))
        if log_with:
            self.acc.init_trackers("train", config={k: v for k, v in (run_config or {}).items() if isinstance(v, (int, float, str, bool))})

    # ------------------------------------------------------------------ checkpoints
    @property
    def ckpt_dir(self) -> Path:
        return self.out / "checkpoints"

    def save_checkpoint(self) -> Path:
        folder = self.ckpt_dir / f"step-{self.step:08d}"
        self.acc.save_state(str(folder))
        if self.acc.is_main_process:
            if self.ema is not None:
                torch.save(self.ema.shadow, folder / "ema.pt")
            (folder / "trainer.json").write_text(json.dumps({"step": self.step}))
            old = sorted(self.ckpt_dir.glob("step-*"))[: -self.cfg.keep_checkpoints]
            for path in old:
                shutil.rmtree(path, ignore_errors=True)
        return folder

    def resume(self) -> bool:
        """Continue from the newest checkpoint in ``out_dir``; False when there is none."""
        folders = sorted(self.ckpt_dir.glob("step-*")) if self.ckpt_dir.is_dir() else []
        if not folders:
            return False
        folder = folders[-1]
        self.acc.load_state(str(folder))
        self.step = json.loads((folder / "trainer.json").read_text())["step"]
        if self.ema is not None and (folder / "ema.pt").is_file():
            self.ema.shadow = torch.load(folder / "ema.pt", weights_only=True)
        log.info("resumed from %s (step %d)", folder, self.step)
        return True

    # ------------------------------------------------------------------ loop
    @torch.no_grad()
    def validate(self) -> float | None:
        if self.valid_loader is None:
            return None
        model = self.acc.unwrap_model(self.model)
        model.eval()
        gen = torch.Generator().manual_seed(1234)  # the same prompts/noise every evaluation
        total, count = 0.0, 0
        for batch in self.valid_loader:
            batch = {k: v.to(self.acc.device) if isinstance(v, Tensor) else v for k, v in batch.items()}
            loss, _ = self.loss_fn(model, {**batch, "generator": gen})
            total += float(loss)
            count += 1
        model.train()
        return total / max(count, 1)

    def fit(self, progress: bool = True) -> list[dict]:
        """Train until ``max_steps``; returns the logged history."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        self.model.train()
        bar = tqdm(total=cfg.max_steps, initial=self.step, disable=not (progress and self.acc.is_local_main_process), desc="train")
        epoch = 0
        t0 = time.perf_counter()
        while self.step < cfg.max_steps:
            sampler = getattr(self.train_loader, "batch_sampler", None)
            inner = getattr(sampler, "batch_sampler", sampler)
            if hasattr(inner, "set_epoch"):
                inner.set_epoch(epoch)
            for batch in self.train_loader:
                with self.acc.accumulate(self.model):
                    loss, logs = self.loss_fn(self.model, batch)
                    self.acc.backward(loss)
                    if self.acc.sync_gradients and cfg.grad_clip > 0:
                        logs["grad_norm"] = float(self.acc.clip_grad_norm_(self.model.parameters(), cfg.grad_clip))
                    self.opt.step()
                    self.sched.step()
                    self.opt.zero_grad(set_to_none=True)
                if not self.acc.sync_gradients:
                    continue
                self.step += 1
                if self.ema is not None:
                    self.ema.update(self.acc.unwrap_model(self.model))
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == 1 or self.step == cfg.max_steps:
                    entry = {"step": self.step, "loss": float(loss.detach()), "lr": self.sched.get_last_lr()[0], "elapsed_s": time.perf_counter() - t0}
                    entry.update({k: v for k, v in logs.items() if k != "loss"})
                    self.history.append(entry)
                    self.acc.log({f"train/{k}": v for k, v in entry.items() if k != "step"}, step=self.step)
                    bar.set_postfix(loss=f"{entry['loss']:.4f}")
                if cfg.eval_every and self.step % cfg.eval_every == 0:
                    val = self.validate()
                    if val is not None:
                        self.history.append({"step": self.step, "valid_loss": val})
                        self.acc.log({"valid/loss": val}, step=self.step)
                if cfg.save_every and self.step % cfg.save_every == 0:
                    self.save_checkpoint()
                if self.step >= cfg.max_steps:
                    break
            epoch += 1
        bar.close()
        self.save_checkpoint()
        self.export(self.out / "final")
        self.acc.end_training()
        return self.history

    def export(self, folder: Path) -> Path:
        """Write the model (with EMA weights when kept) in its inference format."""
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            model = self.acc.unwrap_model(self.model)
            if self.ema is not None:
                backup = {k: p.detach().clone() for k, p in model.named_parameters()}
                self.ema.copy_to(model)
                self.export_fn(model, folder)
                with torch.no_grad():
                    for k, p in model.named_parameters():
                        p.copy_(backup[k])
            else:
                self.export_fn(model, folder)
            (folder / "history.json").write_text(json.dumps(self.history, indent=1))
        return folder


def _has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401

        return True
    except ImportError:
        return False
