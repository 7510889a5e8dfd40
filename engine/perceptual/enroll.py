"""Voice enrollment: the flow model fine-tuned on the voice prompt itself before it speaks in it.

A flow model trained on a dozen voices answers an unseen voice's prompt with the nearest voice it
knows (docs/demo.md, "Voice enrollment"). Enrollment is test-time adaptation on the only data there
is: the prompt. A copy of the model takes ``steps`` Adam steps of its own training loss
(``FlowModel.loss``) on a batch of copies of the prompt's complete and RVQ-1 embeddings, each copy
with its own random prefix shown as context and the rest to generate, exactly as in training. The
copy then speaks for that voice; the shared model is never touched. ``params: vectors`` tunes only
the one-dimensional parameters (norm gains, biases), ``attention`` only the self-attention blocks
(through which target frames read the prompt).

Nothing here knows about voices or caches: ``FlowPerceptual`` keeps the tuned copies per voice.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor

from engine.perceptual.flow_model import FlowModel

PARAMS = ("all", "vectors", "attention")
MIN_FRAMES = 25  # half a second: below this a prompt teaches nothing (and the loss has no frames to score)


@dataclass(frozen=True)
class EnrollSettings:
    steps: int = 0  # Adam steps; 0 = no enrollment
    lr: float = 5e-5
    batch: int = 8  # copies of the prompt per step, each with its own random prefix
    params: str = "all"  # all | vectors (one-dimensional parameters only) | attention (the self-attention blocks: what reads the prompt)
    seed: int = 0

    def validated(self) -> "EnrollSettings":
        if self.steps < 0 or self.batch < 1 or not self.lr > 0:
            raise ValueError(f"enrollment needs steps >= 0, batch >= 1 and lr > 0 (got {self.steps}, {self.batch}, {self.lr})")
        if self.params not in PARAMS:
            raise ValueError(f"unknown enrollment params {self.params!r}; use {', '.join(PARAMS)}")
        return self


def _tuned(which: str, name: str, param: torch.nn.Parameter) -> bool:
    if which == "vectors":
        return param.dim() == 1
    if which == "attention":
        return ".attn." in name
    return True


def enroll(model: FlowModel, prompt_complete: Tensor, prompt_semantic: Tensor, settings: EnrollSettings) -> FlowModel:
    """A copy of ``model`` fine-tuned on one voice prompt (complete / RVQ-1 embeddings [P, F], raw
    codec space); ``model`` itself is left as it was. Runs in float32 and returns the copy in
    ``model``'s dtype, in eval mode, uncompiled. Returns ``model`` itself when there is nothing to do
    (no steps, or a prompt shorter than ``MIN_FRAMES``)."""
    settings = settings.validated()
    frames = int(prompt_complete.shape[0])
    if settings.steps == 0 or frames < MIN_FRAMES:
        return model
    if prompt_semantic.shape != prompt_complete.shape:
        raise ValueError(f"prompt embeddings differ in shape: {tuple(prompt_complete.shape)} vs {tuple(prompt_semantic.shape)}")
    dtype = next(model.parameters()).dtype
    velocity, model._velocity = model._velocity, None  # a compiled function does not deep-copy
    try:
        tuned = copy.deepcopy(model)
    finally:
        model._velocity = velocity
    tuned.compile_bucket = 0
    tuned.cast_weights(torch.float32).train()
    for name, p in tuned.named_parameters():
        p.requires_grad_(_tuned(settings.params, name, p))
    params = [p for p in tuned.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=settings.lr)
    dev = tuned.feature_mean.device
    complete = prompt_complete.to(dev).float()[None].expand(settings.batch, -1, -1)  # [B, P, F]
    semantic = prompt_semantic.to(dev).float()[None].expand(settings.batch, -1, -1)
    lengths = torch.full((settings.batch,), frames, dtype=torch.long, device=dev)
    generator = torch.Generator().manual_seed(settings.seed)
    with torch.enable_grad():
        for _ in range(settings.steps):
            loss, _ = tuned.loss(complete, semantic, lengths, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    tuned.eval()
    for p in tuned.parameters():
        p.requires_grad_(False)
    return tuned.cast_weights(dtype)
