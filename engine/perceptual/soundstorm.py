"""SoundStorm perceptual baseline (paper 5.4): RVQ-1 tokens + voice prompt -> RVQ-2..8 tokens.

A Conformer reads, per frame, the sum of the embeddings of the Q = 7 acoustic tokens (mask id =
codebook size) plus the embedding of the RVQ-1 token, and predicts logits for every level.
Generation is MaskGIT-style: level 2 is unmasked over several iterations with a cosine schedule,
then the finer levels follow. ``mode`` reproduces the two public implementations exactly
("anygpt": one pass per finer level; "speechgpt_gen": steps + 1 passes per level) including their
quirks, which the golden fixtures pin down; ``keep_prompt=True`` (our default for use) never lets a
finer level overwrite the prompt's own tokens.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.errors import ModelUnavailableError
from engine.perceptual.conformer import Conformer, ConformerConfig

NoiseFn = Callable[[tuple[int, ...]], Tensor]  # shape -> Gumbel noise

SIZES = {
    "tiny": ConformerConfig(dim=32, depth=2, heads=2, dim_head=16),
    "base": ConformerConfig(dim=1024, depth=12, heads=8, dim_head=128),  # AnyGPT's checkpoint
}
CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class SoundStormModelConfig:
    backbone: ConformerConfig = field(default_factory=lambda: dataclasses.replace(SIZES["base"]))
    codebook_size: int = 1024
    num_quantizers: int = 7  # RVQ-2..8
    num_semantic_ids: int = 1024
    semantic_pad_id: int = 1024  # AnyGPT 1024, SpeechGPT-Gen -1
    mode: str = "anygpt"  # generation variant: anygpt | speechgpt_gen
    topk_ratio: float = 0.3
    codec: str = "snake"

    @property
    def mask_id(self) -> int:
        return self.codebook_size


class SoundStorm(nn.Module):
    def __init__(self, cfg: SoundStormModelConfig):
        super().__init__()
        self.cfg = cfg
        q, c, d = cfg.num_quantizers, cfg.codebook_size, cfg.backbone.dim
        self.code_embeds = nn.Embedding(q * (c + 1), d)  # row q*(C+1) + token
        self.semantic_emb = nn.Embedding(cfg.num_semantic_ids, d)
        self.backbone = Conformer(cfg.backbone)
        self.heads = nn.Linear(d, q * d)
        self.logits_norm = nn.LayerNorm(d)
        self.logits_weight = nn.Parameter(torch.randn(q, d, c) * d**-0.5)
        self.logits_bias = nn.Parameter(torch.zeros(q, c))
        self.register_buffer("offsets", torch.arange(q) * (c + 1), persistent=False)

    # ------------------------------------------------------------------ network
    def condition(self, semantic_ids: Tensor) -> Tensor:
        """RVQ-1 ids [B, N] -> [B, N, D]; frames holding the semantic pad id get zeros."""
        pad = semantic_ids == self.cfg.semantic_pad_id
        emb = self.semantic_emb(semantic_ids.masked_fill(pad, 0).clamp(0, self.cfg.num_semantic_ids - 1))
        return emb * (~pad)[..., None]

    def forward(self, tokens: Tensor, cond: Tensor, mask: Tensor | None = None) -> Tensor:
        """tokens [B, N, Q] (mask id = codebook size), cond [B, N, D] -> logits [B, N, Q, C]."""
        b, n, q = tokens.shape
        x = self.code_embeds(tokens + self.offsets).sum(dim=2) + cond  # [B, N, D]
        h = self.backbone(x, mask)
        e = self.heads(h).view(b, n, q, -1)  # [B, N, Q, D]
        return torch.einsum("bnqd,qdc->bnqc", self.logits_norm(e), self.logits_weight) + self.logits_bias

    # ------------------------------------------------------------------ training
    def loss(self, codes: Tensor, lengths: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, dict]:
        """codes [B, 8, N] (RVQ-1..8), lengths [B]. Cross-entropy on masked positions of one random
        level per sample, with a random prompt prefix and a cosine masking ratio."""
        b, _, n = codes.shape
        dev = codes.device
        q_n, mask_id = self.cfg.num_quantizers, self.cfg.mask_id
        frames = torch.arange(n, device=dev)[None]
        valid = frames < lengths[:, None].to(dev)
        rnd = lambda *s: torch.rand(*s, generator=generator).to(dev)  # noqa: E731
        prompt_len = (rnd(b) * (lengths.to(dev).float() * 0.5)).long()
        prompt = frames < prompt_len[:, None]
        level = (rnd(b) * q_n).long().clamp(max=q_n - 1)  # [B]
        ratio = torch.cos(rnd(b) * math.pi / 2).clamp(min=1.0 / max(n, 1))  # fraction of frames masked
        masked_frames = (rnd(b, n) < ratio[:, None]) & valid & ~prompt
        # make sure every sample trains on at least one frame
        first_target = prompt_len.clamp(max=(lengths.to(dev) - 1).clamp(min=0))
        masked_frames[torch.arange(b), first_target] |= ~masked_frames.any(1)
        acoustic = codes[:, 1:].transpose(1, 2).clone()  # [B, N, Q]
        levels = torch.arange(q_n, device=dev)[None, None, :]
        above = (levels > level[:, None, None]) & (~prompt)[..., None]
        at = (levels == level[:, None, None]) & masked_frames[..., None]
        tokens = acoustic.masked_fill(above | at, mask_id)
        tokens = tokens.masked_fill(~valid[..., None], mask_id)
        logits = self(tokens, self.condition(codes[:, 0]), valid)  # [B, N, Q, C]
        logits_at = logits.gather(2, level[:, None, None, None].expand(b, n, 1, logits.shape[-1]))[:, :, 0]
        target = acoustic.gather(2, level[:, None, None].expand(b, n, 1))[:, :, 0]
        ce = F.cross_entropy(logits_at.transpose(1, 2), target, reduction="none")  # [B, N]
        weight = masked_frames.float()
        loss = (ce * weight).sum() / weight.sum().clamp(min=1)
        return loss, {"loss": float(loss.detach())}

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(
        self,
        semantic_tokens: Tensor,
        prompt_codes: Tensor | None = None,
        *,
        steps: int = 8,
        greedy: bool = True,
        temperature: float = 1.0,
        mode: str | None = None,
        keep_prompt: bool = True,
        seed: int | None = None,
        noise_fn: NoiseFn | None = None,
        on_call: Callable[[Tensor], None] | None = None,
    ) -> Tensor:
        """semantic_tokens [B, Nt], prompt_codes [B, Np, 8] (RVQ-1..8) -> codes [B, Nt, 8].

        ``noise_fn(shape)`` supplies the Gumbel noise of level 2 (default: drawn from ``seed``);
        ``on_call(tokens [B, N, Q])`` sees every network input (for step-by-step diffing).
        """
        mode = mode or self.cfg.mode
        if mode not in ("anygpt", "speechgpt_gen"):
            raise ValueError(f"unknown SoundStorm mode {mode!r}")
        dev = self.code_embeds.weight.device
        semantic_tokens = semantic_tokens.to(dev).long()
        b, nt = semantic_tokens.shape
        q_n, c, mask_id = self.cfg.num_quantizers, self.cfg.codebook_size, self.cfg.mask_id
        if prompt_codes is None:
            prompt_codes = torch.zeros(b, 0, q_n + 1, dtype=torch.long, device=dev)
        prompt_codes = prompt_codes.to(dev).long()
        np_ = prompt_codes.shape[1]
        n = np_ + nt
        if noise_fn is None:
            gen = torch.Generator().manual_seed(seed) if seed is not None else None

            def noise_fn(shape: tuple[int, ...]) -> Tensor:
                u = torch.rand(shape, generator=gen)
                return -torch.log(-torch.log(u + 1e-10) + 1e-10)

        state = torch.cat([prompt_codes[:, :, 1:], torch.full((b, nt, q_n), mask_id, device=dev)], dim=1)  # [B, N, Q]
        cond = self.semantic_emb(torch.cat([prompt_codes[:, :, 0], semantic_tokens], dim=1))
        is_prompt = torch.zeros(b, n, q_n, dtype=torch.bool, device=dev)
        is_prompt[:, :np_] = True
        open_ = ~is_prompt

        def net(tokens: Tensor) -> Tensor:
            if on_call is not None:
                on_call(tokens)
            return self(tokens, cond).reshape(b, n * q_n, c)  # frame-major positions

        times = torch.linspace(0, 1, steps + 1)
        counts = (torch.cos(times * math.pi / 2) * n).long().tolist()  # frames, applied to all positions
        k = math.ceil(self.cfg.topk_ratio * c)
        flat_state = state.reshape(b, n * q_n)
        flat_open = open_.reshape(b, n * q_n)
        level_of = torch.arange(n * q_n, device=dev) % q_n
        prompt_pos = is_prompt.reshape(b, n * q_n)
        for i in range(steps + 1):  # level 0 (RVQ-2): MaskGIT iterations
            logits = net(flat_state.view(b, n, q_n))
            count = counts[i]
            if count == 0:
                ids = logits.argmax(-1)
            else:
                kth = logits.topk(k, dim=-1).values[..., -1:]
                kept = logits.masked_fill(logits < kth, float("-inf"))
                scaled = kept / max(i / steps, 1e-10)
                if greedy or temperature <= 0:
                    ids = (scaled + noise_fn(tuple(logits.shape)).to(dev)).argmax(-1)
                else:
                    ids = torch.distributions.Categorical(logits=kept / temperature).sample()
            flat_state = torch.where(flat_open, ids, flat_state)
            if count == 0:
                break
            probs = kept.softmax(-1).gather(-1, ids[..., None])[..., 0]
            scores = 1 - probs  # [B, N*Q]
            order = scores.argsort(dim=-1, descending=True)
            flat_open = torch.zeros_like(flat_open)
            flat_open.scatter_(1, order[:, :count], True)
            flat_open |= (level_of > 0)[None]
            flat_open &= ~prompt_pos
            flat_state = flat_state.masked_fill(flat_open, mask_id)
        state = flat_state.view(b, n, q_n)
        repeats = 1 if mode == "anygpt" else steps + 1
        for q in range(1, q_n):  # finer levels
            for _ in range(repeats):
                logits = net(state).view(b, n, q_n, c)
                if greedy or temperature <= 0:
                    ids = logits.argmax(-1)
                else:
                    ids = torch.distributions.Categorical(logits=logits / temperature).sample()
                update = torch.zeros(b, n, q_n, dtype=torch.bool, device=dev)
                update[:, :, q:] = True
                if keep_prompt:
                    update &= ~is_prompt
                state = torch.where(update, ids, state)
        return torch.cat([semantic_tokens[..., None], state[:, np_:]], dim=-1)

    # ------------------------------------------------------------------ checkpoints
    def save_pretrained(self, folder: str | Path) -> Path:
        from safetensors.torch import save_file

        from engine.config import save_yaml_dataclass

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_yaml_dataclass(self.cfg, folder / CONFIG_FILE)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, str(folder / WEIGHTS_FILE))
        return folder

    @classmethod
    def from_pretrained(cls, path: str | Path, filename: str | None = None, codec: str | None = None, device: str | torch.device = "cpu") -> "SoundStorm":
        """Our folder (config.yaml + model.safetensors), a public checkpoint file, or hub id + filename."""
        from engine.hub import locate_files, resolve_files

        p = Path(str(path)).expanduser()
        if p.is_file():
            from engine.perceptual.convert_soundstorm import load_public_soundstorm

            model = load_public_soundstorm(p)
        elif all(locate_files(path, [CONFIG_FILE, WEIGHTS_FILE]).values()):
            from safetensors.torch import load_file

            from engine.config import load_yaml_dataclass

            cfg_path, weights = resolve_files(path, [CONFIG_FILE, WEIGHTS_FILE], what="SoundStorm")
            model = cls(load_yaml_dataclass(SoundStormModelConfig, cfg_path))
            model.load_state_dict(load_file(str(weights)), strict=True)
        else:
            if not filename:
                raise ModelUnavailableError(f"SoundStorm: {path} holds neither config.yaml + model.safetensors nor a checkpoint file; name the file")
            from engine.perceptual.convert_soundstorm import load_public_soundstorm

            (ckpt,) = resolve_files(path, [filename], what="SoundStorm checkpoint")
            model = load_public_soundstorm(ckpt)
        if codec is not None and model.cfg.codec != codec:
            raise ModelUnavailableError(
                f"the SoundStorm model in {path} was trained on the {model.cfg.codec!r} codec, but the config uses {codec!r}; "
                "use the matching codec (each codec has its own codebooks)"
            )
        return model.to(device).eval()
