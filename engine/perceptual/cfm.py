"""Conditional flow matching for the perceptual stage (paper 3.3), independent of the backbone.

Chains (``FlowChain``):
  implicit: prior N(zs, I) (the "semantic prior"), target the complete embedding z.
  explicit: prior N(0, I), target the perceptual embedding zp = z - zs; output zs + zp'.
``noise_scale`` [D] (default ones) is the prior noise's std per dimension of the space the model
works in: FlowModel passes 1 / feature_std when the prior is meant in the raw embedding space.
The estimator is injected: ``estimator.condition(context, semantic) -> cond`` is computed once
per call, ``estimator.velocity(x, t, cond, mask) -> v`` once per ODE evaluation.
Voice prompting: a prefix of the complete embedding is shown as ``context`` (zeros elsewhere);
the loss covers only generated (non-prompt, non-padding) frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch
from torch import Tensor, nn

from engine.perceptual.solvers import solve, time_grid


class Estimator(Protocol):
    def condition(self, context: Tensor, semantic: Tensor | None) -> Tensor: ...
    def velocity(self, x: Tensor, t: Tensor, cond: Tensor, mask: Tensor | None) -> Tensor: ...


@dataclass
class FlowChain:
    semantic_prior: bool = True  # x0 ~ N(zs, I) instead of N(0, I)
    predict_perceptual: bool = False  # target zp (explicit) instead of z

    @classmethod
    def named(cls, name: str) -> "FlowChain":
        if name == "implicit":
            return cls(True, False)
        if name == "explicit":
            return cls(False, True)
        raise ValueError(f"unknown chain {name!r}; use implicit or explicit")


class ConditionalFlowMatching(nn.Module):
    """Loss and sampler. All embeddings here are already normalised; shapes [B, N, D]."""

    def __init__(self, estimator: nn.Module, chain: FlowChain, sigma_min: float = 0.0, max_prompt_frames: int = 300, prompt_dropout: float = 0.0):
        super().__init__()
        self.estimator = estimator
        self.chain = chain
        self.sigma_min = sigma_min
        self.max_prompt_frames = max_prompt_frames
        self.prompt_dropout = prompt_dropout

    def prior_mean(self, semantic: Tensor) -> Tensor:
        return semantic if self.chain.semantic_prior else torch.zeros_like(semantic)

    def loss(
        self, complete: Tensor, semantic: Tensor, lengths: Tensor, generator: torch.Generator | None = None, prompt_lengths: Tensor | None = None,
        noise_scale: Tensor | None = None,
    ) -> tuple[Tensor, dict]:
        """Masked MSE on the optimal-transport path. complete/semantic [B, N, D]; lengths [B] frames;
        prompt_lengths [B] (default: drawn per sample); noise_scale [D]: the prior noise's std (default 1)."""
        b, n, _ = complete.shape
        dev = complete.device
        rng_dev = generator.device if generator is not None else dev  # draw where the generator lives, else on the data's device
        frames = torch.arange(n, device=dev)[None, :]  # [1, N]
        valid = frames < lengths[:, None].to(dev)  # [B, N]
        # random prompt prefix per sample: p ~ U[0, min(len, max_prompt) - 1)
        upper = (lengths.to(dev).clamp(max=self.max_prompt_frames) - 1).clamp(min=1).float()
        p = (torch.rand(b, generator=generator, device=rng_dev).to(dev) * upper).long() if prompt_lengths is None else prompt_lengths.to(dev)
        prompt = frames < p[:, None]  # [B, N]
        if self.training and self.prompt_dropout > 0:  # classifier-free guidance: sometimes no prompt
            drop = torch.rand(b, generator=generator, device=rng_dev).to(dev) < self.prompt_dropout
            prompt_shown = prompt & ~drop[:, None]
        else:
            prompt_shown = prompt
        context = complete * prompt_shown[..., None]
        target = complete - semantic if self.chain.predict_perceptual else complete
        eps = torch.randn(complete.shape, generator=generator, device=rng_dev).to(dev)
        x0 = (eps if noise_scale is None else eps * noise_scale.to(dev, eps.dtype)) + self.prior_mean(semantic)
        t = torch.rand(b, generator=generator, device=rng_dev).to(dev)
        tt = t[:, None, None]
        xt = (1 - (1 - self.sigma_min) * tt) * x0 + tt * target
        u = target - (1 - self.sigma_min) * x0
        v = self.estimator.velocity(xt, t, self.estimator.condition(context, semantic), valid)
        weight = (valid & ~prompt).float()[..., None]  # [B, N, 1]
        loss = ((v - u) ** 2 * weight).sum() / (weight.sum() * complete.shape[-1]).clamp(min=1)
        return loss, {"loss": float(loss.detach()), "prompt_frames": float(p.float().mean())}

    @torch.no_grad()
    def sample(
        self,
        y0: Tensor,
        context: Tensor,
        semantic: Tensor,
        mask: Tensor | None,
        steps: int,
        method: str = "midpoint",
        schedule: str = "uniform",
        guidance_scale: float = 0.0,
        keep_all: bool = False,
        velocity: Callable[[Tensor, Tensor, Tensor, Tensor | None], Tensor] | None = None,
    ) -> Tensor | list[Tensor]:
        """Integrate from ``y0`` (already holding the prior mean). Returns x at t = 1 (in the target
        space: z for implicit, zp for explicit), or every grid state with ``keep_all``.
        ``velocity``: the estimator's ``velocity`` or a compiled version of it (default: the former)."""
        velocity = velocity or self.estimator.velocity
        cond = self.estimator.condition(context, semantic)
        if guidance_scale > 0:  # conditional and prompt-free halves in one batch
            uncond = self.estimator.condition(torch.zeros_like(context), semantic)
            cond2 = torch.cat([cond, uncond])
            mask2 = None if mask is None else torch.cat([mask, mask])

            def fn(y: Tensor, t: Tensor) -> Tensor:
                v_c, v_u = velocity(torch.cat([y, y]), torch.cat([t, t]), cond2, mask2).chunk(2)
                return v_c + guidance_scale * (v_c - v_u)
        else:

            def fn(y: Tensor, t: Tensor) -> Tensor:
                return velocity(y, t, cond, mask)

        grid = time_grid(steps, schedule, device=y0.device)
        return solve(fn, y0, grid, method, keep_all=keep_all)
