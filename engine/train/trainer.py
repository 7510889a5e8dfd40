"""A generic ``accelerate`` training loop for the perceptual models.

The same command runs on a CPU, one GPU, or many GPUs/nodes under ``accelerate launch``.
Features: bf16 mixed precision on GPUs that support it (float32 on CPU), AdamW, warm-up +
cosine/linear decay, gradient clipping, gradient accumulation, EMA weights, validation loss (raw
and EMA weights), TensorBoard logs, periodic checkpoints and ``resume()`` (model, optimiser,
schedule, RNG states, EMA, step, and the position in the epoch).

The model plugs in through a small protocol: ``loss_fn(model, batch) -> (loss, logs)``, by default
``model.loss(batch)``; ``export_fn(model, folder)`` writes the inference format. The loss runs
inside the prepared (DDP, autocast) module, so gradients are synchronised across processes and
mixed precision applies to it.
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
STATE_FILE = "trainer.json"  # written last: marks a complete checkpoint


@dataclass
class TrainConfig:
    max_steps: int = 200_000  # optimiser steps
    lr: float = 1e-4
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.98
    warmup_steps: int = 2000
    decay: str = "cosine"  # cosine | linear | constant
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0  # 0 disables
    grad_accum: int = 1
    batch_frames: int = 12_000  # total (padded) frames per batch and device
    max_frames: int = 1500  # longer utterances are randomly cropped (30 s)
    ema_decay: float = 0.9999  # 0 disables EMA
    ema_warmup: bool = True  # decay min(ema_decay, (1 + step) / (10 + step)): early weights fade out of short runs
    mixed_precision: str = "auto"  # auto (bf16 on CUDA when supported, else float32) | bf16 | fp16 | no
    log_every: int = 50
    eval_every: int = 2000  # 0 disables
    save_every: int = 5000  # 0: only at the end
    keep_checkpoints: int = 3
    valid_fraction: float = 0.01
    num_workers: int = 2
    seed: int = 0
    find_unused_parameters: bool = False  # DDP: needed only when some parameters get no gradient in a step


def lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    """Multiplier of ``cfg.lr`` after ``step`` optimiser steps: linear warm-up, then decay to ``min_lr_ratio``."""
    if cfg.decay not in ("cosine", "linear", "constant"):
        raise ValueError(f"unknown decay {cfg.decay!r}; use cosine, linear or constant")

    def fn(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / max(cfg.warmup_steps, 1)
        if cfg.decay == "constant":
            return 1.0
        progress = min((step - cfg.warmup_steps) / max(cfg.max_steps - cfg.warmup_steps, 1), 1.0)
        shape = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.decay == "cosine" else 1 - progress
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * shape

    return fn


def resolve_mixed_precision(name: str) -> str:
    """``auto`` -> bf16 on a CUDA device that supports it, else ``no`` (float32, e.g. on CPU)."""
    if name == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    if name not in ("bf16", "fp16", "no"):
        raise ValueError(f"unknown mixed_precision {name!r}; use auto, bf16, fp16 or no")
    return name


class EMA:
    """Exponential moving average of the trainable parameters (kept in float32).

    With ``warmup`` the decay at optimiser step t is min(decay, (1 + t) / (10 + t)): without it a
    0.999 average still holds 0.999^1400 = 25 % of the random initial weights after 1400 steps."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True):
        self.decay = decay
        self.warmup = warmup
        self.shadow = {k: p.detach().float().clone() for k, p in model.named_parameters() if p.requires_grad}

    def decay_at(self, step: int | None) -> float:
        """The decay used for the update after optimiser step ``step`` (1-based)."""
        if not self.warmup or step is None:
            return self.decay
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int | None = None) -> None:
        weight = 1 - self.decay_at(step)
        pairs = [(self.shadow[k], p.detach()) for k, p in model.named_parameters() if k in self.shadow]
        if all(p.dtype == s.dtype and p.device == s.device for s, p in pairs):  # one fused call
            torch._foreach_lerp_([s for s, _ in pairs], [p for _, p in pairs], weight)
        else:
            for s, p in pairs:
                s.lerp_(p.float().to(s.device), weight)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        for k, p in model.named_parameters():
            if k in self.shadow:
                p.copy_(self.shadow[k].to(p.dtype))


class _LossModule(nn.Module):
    """The model with its loss as ``forward``: what accelerate wraps (DDP, autocast)."""

    def __init__(self, model: nn.Module, loss_fn: LossFn):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: dict) -> tuple[Tensor, dict]:
        return self.loss_fn(self.model, batch)


def _default_loss(model: nn.Module, batch: dict) -> tuple[Tensor, dict]:
    return model.loss(batch)


class Trainer:
    """Train ``model`` with ``loss_fn`` on ``train_loader`` (batches are dicts of tensors)."""

    def __init__(
        self,
        model: nn.Module,
        train_loader,
        valid_loader,
        cfg: TrainConfig,
        out_dir: str | Path,
        loss_fn: LossFn | None = None,
        export_fn: ExportFn | None = None,
        run_config: dict | None = None,
    ):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs, set_seed

        self.cfg = cfg
        self.out = Path(out_dir)
        lr_lambda(cfg)  # validates the decay name before any work
        mp = resolve_mixed_precision(cfg.mixed_precision)
        log_with = "tensorboard" if _has_tensorboard() else None
        self.acc = Accelerator(
            mixed_precision=mp, gradient_accumulation_steps=cfg.grad_accum, log_with=log_with, project_dir=str(self.out),
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=cfg.find_unused_parameters)],
        )
        set_seed(cfg.seed)
        self.model = model  # the bare model (what export_fn, EMA and validation see)
        self.export_fn = export_fn or (lambda m, folder: m.save_pretrained(folder))
        if isinstance(train_loader, torch.utils.data.DataLoader) and train_loader.generator is None:
            # starting an epoch must not draw from the global RNG, or a resumed run would diverge
            train_loader.generator = torch.Generator().manual_seed(cfg.seed)
        self.loss_fn = loss_fn or _default_loss
        wrapper = _LossModule(model, self.loss_fn)
        model.to(self.acc.device)
        fused = self.acc.device.type == "cuda"  # one kernel per step on GPUs; multi-tensor ops on CPU
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay,
                                fused=fused or None, foreach=None if fused else True)
        # the schedule is stepped here once per optimiser step (accelerate's wrapper would step it
        # once per process, finishing warm-up and decay early on many GPUs); saved with the state
        self.sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
        self.wrapped, self.opt, self.train_loader = self.acc.prepare(wrapper, opt, train_loader)
        self.acc.register_for_checkpointing(self.sched)
        self.valid_loader = valid_loader
        self.ema = EMA(model, cfg.ema_decay, cfg.ema_warmup) if cfg.ema_decay > 0 else None
        self.step = 0
        self.epoch = 0
        self.batches_in_epoch = 0  # micro-batches of the current epoch already consumed
        self.history: list[dict] = []
        if self.acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            if run_config is not None:
                (self.out / "run_config.json").write_text(json.dumps(run_config, indent=2, default=str))
        if log_with:
            self.acc.init_trackers("train", config={k: v for k, v in (run_config or {}).items() if isinstance(v, (int, float, str, bool))})
        log.info("training on %s, %d process(es), mixed precision %s", self.acc.device, self.acc.num_processes, mp)

    # ------------------------------------------------------------------ checkpoints
    @property
    def ckpt_dir(self) -> Path:
        return self.out / "checkpoints"

    def save_checkpoint(self) -> Path:
        """Everything needed to continue: ``checkpoints/step-NNNNNNNN`` (the oldest beyond ``keep_checkpoints`` go)."""
        folder = self.ckpt_dir / f"step-{self.step:08d}"
        self.acc.wait_for_everyone()
        self.acc.save_state(str(folder))
        if self.acc.is_main_process:
            if self.ema is not None:
                torch.save(self.ema.shadow, folder / "ema.pt")
            state = {"step": self.step, "epoch": self.epoch, "batches_in_epoch": self.batches_in_epoch}
            (folder / STATE_FILE).write_text(json.dumps(state))
            done = sorted(p for p in self.ckpt_dir.glob("step-*") if (p / STATE_FILE).is_file())
            for path in done[: -self.cfg.keep_checkpoints] if self.cfg.keep_checkpoints > 0 else []:
                shutil.rmtree(path, ignore_errors=True)
        self.acc.wait_for_everyone()
        return folder

    def resume(self) -> bool:
        """Continue from the newest complete checkpoint in ``out_dir``; False when there is none."""
        folders = sorted(p for p in self.ckpt_dir.glob("step-*") if (p / STATE_FILE).is_file()) if self.ckpt_dir.is_dir() else []
        if not folders:
            return False
        folder = folders[-1]
        self.acc.load_state(str(folder))
        state = json.loads((folder / STATE_FILE).read_text())
        self.step = int(state["step"])
        self.epoch = int(state.get("epoch", 0))
        self.batches_in_epoch = int(state.get("batches_in_epoch", 0))
        if self.ema is not None:
            if (folder / "ema.pt").is_file():
                shadow = torch.load(folder / "ema.pt", weights_only=True)
                self.ema.shadow = {k: v.to(self.acc.device) for k, v in shadow.items()}
            else:
                self.ema = EMA(self.model, self.cfg.ema_decay, self.cfg.ema_warmup)
        log.info("resumed from %s (step %d, epoch %d)", folder, self.step, self.epoch)
        return True

    # ------------------------------------------------------------------ evaluation
    def _swap_in_ema(self) -> dict[str, Tensor] | None:
        if self.ema is None:
            return None
        backup = {k: p.detach().clone() for k, p in self.model.named_parameters() if k in self.ema.shadow}
        self.ema.copy_to(self.model)
        return backup

    @torch.no_grad()
    def _restore(self, backup: dict[str, Tensor] | None) -> None:
        if backup is not None:
            for k, p in self.model.named_parameters():
                if k in backup:
                    p.copy_(backup[k])

    @torch.no_grad()
    def _valid_loss(self, metrics: dict[str, float] | None = None) -> float:
        """Mean validation loss; ``metrics`` receives the mean of the loss function's plain-float logs
        (e.g. SoundStorm's accuracy, the codec's phoneme error rate; tensor logs are training-only)."""
        gen = torch.Generator().manual_seed(1234)  # the same prompts/noise every evaluation
        total, count = 0.0, 0
        sums: dict[str, float] = {}
        for batch in self.valid_loader:
            batch = {k: v.to(self.acc.device) if isinstance(v, Tensor) else v for k, v in batch.items()}
            with self.acc.autocast():
                loss, logs = self.loss_fn(self.model, {**batch, "generator": gen})
            total += float(loss)
            count += 1
            for key, value in (logs or {}).items():
                if isinstance(value, float) and key != "loss":  # plain floats: metrics (e.g. accuracy, error rate)
                    sums[key] = sums.get(key, 0.0) + value
        if metrics is not None:
            metrics.update({k: v / max(count, 1) for k, v in sums.items()})
        return total / max(count, 1)

    def validate(self) -> dict[str, float]:
        """Validation loss with the current weights and, when kept, the EMA weights ({} without a validation set)."""
        if self.valid_loader is None:
            return {}
        self.model.eval()
        try:
            metrics: dict[str, float] = {}
            out = {"valid_loss": self._valid_loss(metrics)}
            out.update({f"valid_{k}": v for k, v in metrics.items()})
            backup = self._swap_in_ema()
            if backup is not None:
                try:
                    out["valid_loss_ema"] = self._valid_loss()
                finally:
                    self._restore(backup)
        finally:
            self.model.train()
        return out

    # ------------------------------------------------------------------ loop
    def _set_epoch(self, epoch: int) -> None:
        if hasattr(self.train_loader, "set_epoch"):
            self.train_loader.set_epoch(epoch)
        sampler = getattr(self.train_loader, "batch_sampler", None)
        for s in (sampler, getattr(sampler, "batch_sampler", None), getattr(self.train_loader, "dataset", None)):
            if hasattr(s, "set_epoch"):
                s.set_epoch(epoch)

    def fit(self, progress: bool = True) -> list[dict]:
        """Train until ``max_steps`` optimiser steps; export ``out_dir/final``; returns the logged history."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        self.wrapped.train()
        bar = tqdm(total=cfg.max_steps, initial=self.step, disable=not (progress and self.acc.is_local_main_process), desc="train")
        t0, frames, t_last = time.perf_counter(), 0, time.perf_counter()
        grad_norm: Tensor | None = None
        while self.step < cfg.max_steps:
            self._set_epoch(self.epoch)
            loader = self.train_loader
            if self.batches_in_epoch:
                loader = self.acc.skip_first_batches(self.train_loader, self.batches_in_epoch)
            seen = 0
            for batch in loader:
                seen += 1
                self.batches_in_epoch += 1
                if "lengths" in batch:
                    frames += int(batch["lengths"].sum())
                with self.acc.accumulate(self.wrapped):
                    loss, logs = self.wrapped(batch)
                    self.acc.backward(loss)
                    if self.acc.sync_gradients and cfg.grad_clip > 0:
                        grad_norm = self.acc.clip_grad_norm_(self.wrapped.parameters(), cfg.grad_clip)
                    self.opt.step()
                    self.opt.zero_grad(set_to_none=True)
                if not self.acc.sync_gradients:
                    continue
                if not self.opt.step_was_skipped:  # (fp16 overflow skips the step)
                    self.sched.step()
                self.step += 1
                if self.ema is not None:
                    self.ema.update(self.model, self.step)
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == 1 or self.step == cfg.max_steps:
                    self._log(loss, logs, grad_norm, frames, time.perf_counter() - t_last, time.perf_counter() - t0)
                    bar.set_postfix(loss=f"{self.history[-1]['loss']:.4f}")
                    frames, t_last = 0, time.perf_counter()
                if cfg.eval_every and (self.step % cfg.eval_every == 0 or self.step == cfg.max_steps):  # and at the end
                    val = self.validate()
                    if val:
                        self.history.append({"step": self.step, **val})
                        self.acc.log({f"valid/{k.removeprefix('valid_')}": v for k, v in val.items()}, step=self.step)
                if cfg.save_every and self.step % cfg.save_every == 0:
                    self.save_checkpoint()
                if self.step >= cfg.max_steps:
                    break
            else:  # the epoch ran out
                if not seen and not self.batches_in_epoch:
                    raise ValueError("the training data loader yields no batches; check the data folder and batch_frames")
                self.epoch += 1
                self.batches_in_epoch = 0
        bar.close()
        if not (self.ckpt_dir / f"step-{self.step:08d}" / STATE_FILE).is_file():
            self.save_checkpoint()
        self.export(self.out / "final")
        self.acc.end_training()
        return self.history

    def _log(self, loss: Tensor, logs: dict, grad_norm: Tensor | None, frames: int, interval_s: float, elapsed_s: float) -> None:
        mean_loss = float(self.acc.reduce(loss.detach().float(), reduction="mean"))  # over processes
        entry = {"step": self.step, "loss": mean_loss, "lr": self.sched.get_last_lr()[0], "elapsed_s": elapsed_s,
                 "frames_per_s": frames * self.acc.num_processes / max(interval_s, 1e-9)}
        if grad_norm is not None:
            entry["grad_norm"] = float(grad_norm)
        entry.update({k: float(v) for k, v in logs.items() if k != "loss" and isinstance(v, (int, float, Tensor))})
        self.history.append(entry)
        self.acc.log({f"train/{k}": v for k, v in entry.items() if k != "step"}, step=self.step)

    def export(self, folder: Path) -> Path:
        """Write the model (with EMA weights when kept) in its inference format, plus ``history.json``."""
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            backup = self._swap_in_ema()
            try:
                self.export_fn(self.model, folder)
            finally:
                self._restore(backup)
            (folder / "history.json").write_text(json.dumps(self.history, indent=1))
        self.acc.wait_for_everyone()
        return folder


def _has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401

        return True
    except ImportError:
        return False
