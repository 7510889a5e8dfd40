"""SoundStorm perceptual baseline (paper 5.4): RVQ-1 tokens + voice prompt -> RVQ-2..8 tokens.

A Conformer reads, per frame, the sum of the embeddings of the Q = 7 acoustic tokens (mask id =
codebook size) plus the embedding of the RVQ-1 token, and predicts logits for every level.
Generation is MaskGIT-style: level 2 is unmasked over several iterations with a cosine schedule,
then the finer levels follow, one greedy pass each. Three variants (``mode``):

- ``"soundstorm"`` (our models): as in the SoundStorm paper and as trained by ``loss``: the
  schedule counts the target frames of the current level, only those are scored and re-masked,
  the levels above the current one stay masked, the prompt is never changed.
- ``"anygpt"`` and ``"speechgpt_gen"``: exact replicas of the two public implementations,
  including their quirks (frame counts applied to all N*Q positions, scoring over prompt and
  every level, finer levels overwriting the levels above them; one pass per finer level for
  AnyGPT, steps + 1 for SpeechGPT-Gen), which the golden fixtures pin down. The defaults
  (``keep_prompt=False``, ``steps=None`` = ``PUBLIC_STEPS``, greedy) reproduce the public code bit
  for bit, the way AnyGPT runs it; ``keep_prompt=True`` is our variant, in which the finer levels
  never overwrite the prompt's own tokens (docs/perceptual.md gives its measured effect).
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

NoiseFn = Callable[[tuple[int, ...]], Tensor]  # shape -> Gumbel noise of that shape
MODES = ("soundstorm", "anygpt", "speechgpt_gen")
PUBLIC_STEPS = 3  # AnyGPT's config/generate_config.json "vc_steps", passed to generate by its inference code
OUR_STEPS = 8  # our paper-style decoding (mode "soundstorm")


def default_steps(mode: str) -> int:
    """MaskGIT iterations when none are asked for: the public setting for the public variants."""
    return OUR_STEPS if mode == "soundstorm" else PUBLIC_STEPS

SIZES = {
    "tiny": ConformerConfig(dim=32, depth=2, heads=2, dim_head=16),
    "small": ConformerConfig(dim=256, depth=6, heads=4, dim_head=64),
    "base": ConformerConfig(dim=1024, depth=12, heads=8, dim_head=128),  # = AnyGPT's public checkpoint
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
    mode: str = "anygpt"  # default generation variant: soundstorm | anygpt | speechgpt_gen
    topk_ratio: float = 0.3  # level-2 candidates: the top ceil(ratio * C) logits
    codec: str = "snake"  # the codec whose codes the model was trained on

    @property
    def mask_id(self) -> int:
        return self.codebook_size

    @classmethod
    def preset(cls, size: str, **kwargs) -> "SoundStormModelConfig":
        """A named size (``tiny`` for tests, ``small``, ``base`` = the AnyGPT checkpoint's)."""
        if size not in SIZES:
            raise ValueError(f"unknown SoundStorm size {size!r}; use one of {', '.join(SIZES)}")
        return cls(backbone=dataclasses.replace(SIZES[size]), **kwargs)


def gumbel_from_uniform(u: Tensor) -> Tensor:
    """Gumbel noise from U[0, 1) draws, with the public code's 1e-10 guards."""
    return -torch.log(-torch.log(u + 1e-10) + 1e-10)


def default_noise_fn(seed: int | None, device: torch.device) -> NoiseFn:
    """Gumbel noise from a private generator (``seed``) or, with ``seed=None``, the global RNG.
    Drawn on the CPU so that a seed gives the same tokens on every device."""
    gen = torch.Generator().manual_seed(seed) if seed is not None else None

    def noise(shape: tuple[int, ...]) -> Tensor:
        return gumbel_from_uniform(torch.rand(shape, generator=gen)).to(device)

    return noise


class SoundStorm(nn.Module):
    def __init__(self, cfg: SoundStormModelConfig):
        super().__init__()
        if cfg.mode not in MODES:
            raise ValueError(f"unknown SoundStorm mode {cfg.mode!r}; use one of {', '.join(MODES)}")
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
        """tokens [B, N, Q] (mask id = codebook size), cond [B, N, D], mask [B, N] (True = valid)
        -> logits [B, N, Q, C]."""
        b, n, q = tokens.shape
        x = self.code_embeds(tokens + self.offsets).sum(dim=2) + cond  # [B, N, D]
        h = self.backbone(x, mask)
        e = self.heads(h).view(b, n, q, -1)  # [B, N, Q, D]
        return torch.einsum("bnqd,qdc->bnqc", self.logits_norm(e), self.logits_weight) + self.logits_bias

    # ------------------------------------------------------------------ training
    def loss(self, codes: Tensor, lengths: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, dict]:
        """Masked-token cross-entropy (SoundStorm training). codes [B, 8, N] (RVQ-1..8), lengths [B].

        Per sample: a prompt prefix of up to half the utterance (all levels visible), a level q, a
        cosine masking ratio r = cos(pi/2 * u): each target frame's level-q token is masked with
        probability r (at least one), levels above q are masked on every target frame, levels below
        are visible. The loss is the cross-entropy on the masked level-q positions only. Frames past
        ``lengths`` (or holding the mask id) are excluded from attention and loss."""
        b, _, n = codes.shape
        dev = codes.device
        q_n, mask_id = self.cfg.num_quantizers, self.cfg.mask_id
        acoustic = codes[:, 1:].transpose(1, 2)  # [B, N, Q]
        frames = torch.arange(n, device=dev)[None]
        valid = (frames < lengths.to(dev)[:, None]) & (acoustic < mask_id).all(-1) & (acoustic >= 0).all(-1)
        num_valid = valid.sum(1)

        def rnd(*shape: int) -> Tensor:
            return torch.rand(*shape, generator=generator).to(dev)

        prompt_len = (rnd(b) * (num_valid.float() * 0.5)).long()  # [B]
        prompt = frames < prompt_len[:, None]
        level = (rnd(b) * q_n).long().clamp(max=q_n - 1)  # [B]
        ratio = torch.cos(rnd(b) * math.pi / 2)  # fraction of target frames masked
        target = valid & ~prompt
        masked = (rnd(b, n) < ratio[:, None]) & target
        # every sample trains on at least one frame: its first target frame if none was drawn
        first = torch.where(target, frames.expand(b, n), n).min(1).values.clamp(max=n - 1)
        masked[torch.arange(b, device=dev), first] |= ~masked.any(1) & target.any(1)
        levels = torch.arange(q_n, device=dev)[None, None, :]
        hide = ((levels > level[:, None, None]) & target[..., None]) | ((levels == level[:, None, None]) & masked[..., None])
        tokens = acoustic.masked_fill(hide | ~valid[..., None], mask_id).clamp(0, mask_id)
        semantic = codes[:, 0].clamp(0, self.cfg.num_semantic_ids - 1)
        logits = self(tokens, self.semantic_emb(semantic), valid)  # [B, N, Q, C]
        pick = level[:, None, None, None].expand(b, n, 1, logits.shape[-1])
        logits_q = logits.gather(2, pick)[:, :, 0]  # [B, N, C]
        target_ids = acoustic.gather(2, level[:, None, None].expand(b, n, 1))[:, :, 0].clamp(0, mask_id - 1)
        ce = F.cross_entropy(logits_q.transpose(1, 2), target_ids, reduction="none")  # [B, N]
        weight = masked.float()
        loss = (ce * weight).sum() / weight.sum().clamp(min=1)
        with torch.no_grad():
            acc = ((logits_q.argmax(-1) == target_ids).float() * weight).sum() / weight.sum().clamp(min=1)
        return loss, {"loss": float(loss.detach()), "acc": float(acc)}

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(
        self,
        semantic_tokens: Tensor,
        prompt_codes: Tensor | None = None,
        *,
        steps: int | None = None,
        greedy: bool = True,
        temperature: float = 1.0,
        mode: str | None = None,
        keep_prompt: bool = False,
        seed: int | None = None,
        noise_fn: NoiseFn | None = None,
        on_call: Callable[[Tensor], None] | None = None,
    ) -> Tensor:
        """semantic_tokens [B, Nt] (RVQ-1), prompt_codes [B, Np, 8] (RVQ-1..8) or None -> codes [B, Nt, 8].

        ``steps``: MaskGIT iterations for RVQ-2 (None: ``default_steps(mode)``). ``greedy``: argmax decoding (in the public modes,
        as in the public code, level 2 still adds Gumbel noise at a growing temperature i/steps);
        ``greedy=False`` samples every token from the top-k filtered distribution at ``temperature``.
        ``mode`` defaults to the model's ``cfg.mode``. ``keep_prompt`` (public modes only): False as
        in the public code (the finer-level passes overwrite the prompt frames too), True keeps the
        prompt's own tokens. ``seed`` makes the random draws reproducible
        (None: the global RNG); ``noise_fn(shape)`` replaces the Gumbel noise source;
        ``on_call(tokens [B, N, Q])`` sees every network input (for step-by-step diffing).
        """
        mode = mode or self.cfg.mode
        if mode not in MODES:
            raise ValueError(f"unknown SoundStorm mode {mode!r}; use one of {', '.join(MODES)}")
        steps = default_steps(mode) if steps is None else steps
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if not greedy and temperature <= 0:
            raise ValueError("sampling needs temperature > 0 (or use greedy=True)")
        dev = self.code_embeds.weight.device
        semantic_tokens = torch.as_tensor(semantic_tokens).to(dev).long()
        if semantic_tokens.dim() != 2:
            raise ValueError(f"semantic_tokens must be [B, Nt], got {tuple(semantic_tokens.shape)}")
        b, nt = semantic_tokens.shape
        q_n = self.cfg.num_quantizers
        if prompt_codes is None:
            prompt_codes = torch.zeros(b, 0, q_n + 1, dtype=torch.long, device=dev)
        prompt_codes = torch.as_tensor(prompt_codes).to(dev).long()
        if prompt_codes.dim() != 3 or prompt_codes.shape[0] != b or prompt_codes.shape[2] != q_n + 1:
            raise ValueError(f"prompt_codes must be [B={b}, Np, {q_n + 1}], got {tuple(prompt_codes.shape)}")
        ids = torch.cat([prompt_codes[:, :, 0], semantic_tokens], dim=1)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.cfg.num_semantic_ids):
            raise ValueError(f"RVQ-1 tokens must lie in [0, {self.cfg.num_semantic_ids})")
        if prompt_codes.numel() and (int(prompt_codes.min()) < 0 or int(prompt_codes.max()) >= self.cfg.codebook_size):
            raise ValueError(f"prompt codes must lie in [0, {self.cfg.codebook_size})")
        if noise_fn is None:
            noise_fn = default_noise_fn(seed, dev)
        cond = self.semantic_emb(ids)  # [B, N, D], plain lookup (no pad handling)

        def net(tokens: Tensor) -> Tensor:  # [B, N, Q] -> [B, N, Q, C]
            if on_call is not None:
                on_call(tokens)
            return self(tokens, cond)

        run = self._generate_soundstorm if mode == "soundstorm" else self._generate_public
        state = run(net, prompt_codes[:, :, 1:], nt, steps, greedy, temperature, noise_fn, mode, keep_prompt)
        return torch.cat([semantic_tokens[..., None], state[:, prompt_codes.shape[1]:]], dim=-1)

    def _topk_filter(self, logits: Tensor) -> Tensor:
        k = math.ceil(self.cfg.topk_ratio * logits.shape[-1])
        kth = logits.topk(k, dim=-1).values[..., -1:]
        return logits.masked_fill(logits < kth, float("-inf"))

    def _generate_public(self, net, prompt: Tensor, nt: int, steps: int, greedy: bool, temperature: float,
                         noise_fn: NoiseFn, mode: str, keep_prompt: bool) -> Tensor:
        """The public implementations' decoding, quirks included. prompt [B, Np, Q] -> state [B, N, Q]."""
        b, np_, q_n = prompt.shape
        n, c, mask_id = np_ + nt, self.cfg.codebook_size, self.cfg.mask_id
        dev = prompt.device
        state = torch.cat([prompt, torch.full((b, nt, q_n), mask_id, dtype=torch.long, device=dev)], dim=1)
        is_prompt = torch.zeros(b, n, q_n, dtype=torch.bool, device=dev)
        is_prompt[:, :np_] = True
        flat = state.reshape(b, n * q_n)  # frame-major positions n*Q + q
        open_ = (~is_prompt).reshape(b, n * q_n)
        prompt_pos = is_prompt.reshape(b, n * q_n)
        level_of = torch.arange(n * q_n, device=dev) % q_n
        times = torch.linspace(0, 1, steps + 1)
        counts = (torch.cos(times * math.pi / 2) * n).long().tolist()  # frames, applied to all positions
        for i in range(steps + 1):  # level 0 (RVQ-2): MaskGIT iterations
            logits = net(flat.view(b, n, q_n)).reshape(b, n * q_n, c)
            count = counts[i]
            if count == 0:
                ids = logits.argmax(-1) if greedy else (logits / temperature + noise_fn(tuple(logits.shape))).argmax(-1)
            else:
                kept = self._topk_filter(logits)
                scale = max(i / steps, 1e-10) if greedy else temperature
                ids = (kept / scale + noise_fn(tuple(logits.shape))).argmax(-1)
            flat = torch.where(open_, ids, flat)
            if count == 0:
                break
            scores = 1 - kept.softmax(-1).gather(-1, ids[..., None])[..., 0]  # [B, N*Q]
            order = scores.argsort(dim=-1, descending=True)
            open_ = torch.zeros_like(open_)
            open_.scatter_(1, order[:, :count], True)
            open_ |= (level_of > 0)[None]
            open_ &= ~prompt_pos
            flat = flat.masked_fill(open_, mask_id)
        state = flat.view(b, n, q_n)
        repeats = 1 if mode == "anygpt" else steps + 1
        levels = torch.arange(q_n, device=dev)
        for q in range(1, q_n):  # finer levels: levels q..Q-1 of every frame are overwritten
            for _ in range(repeats):
                logits = net(state)
                ids = logits.argmax(-1) if greedy else (logits / temperature + noise_fn(tuple(logits.shape))).argmax(-1)
                update = (levels >= q)[None, None, :].expand(b, n, q_n)
                if keep_prompt:
                    update = update & ~is_prompt
                state = torch.where(update, ids, state)
        return state

    def _generate_soundstorm(self, net, prompt: Tensor, nt: int, steps: int, greedy: bool, temperature: float,
                             noise_fn: NoiseFn, mode: str, keep_prompt: bool) -> Tensor:
        """Paper-style decoding, matching ``loss``. prompt [B, Np, Q] -> state [B, N, Q]."""
        b, np_, q_n = prompt.shape
        n, mask_id = np_ + nt, self.cfg.mask_id
        dev = prompt.device
        state = torch.cat([prompt, torch.full((b, nt, q_n), mask_id, dtype=torch.long, device=dev)], dim=1)
        if nt == 0:
            return state
        # level 0 (RVQ-2): after iteration i, cos(pi/2 * (i+1)/steps) * Nt target frames stay masked
        masked = torch.ones(b, nt, dtype=torch.bool, device=dev)
        for i in range(steps):
            logits = net(state)[:, np_:, 0]  # [B, Nt, C]
            kept = self._topk_filter(logits)
            if greedy:
                ids = kept.argmax(-1)
            else:
                ids = (kept / temperature + noise_fn(tuple(kept.shape))).argmax(-1)
            logp = kept.log_softmax(-1).gather(-1, ids[..., None])[..., 0]  # [B, Nt]
            remain = math.floor(math.cos(math.pi / 2 * (i + 1) / steps) * nt)
            if remain <= 0:
                state[:, np_:, 0] = torch.where(masked, ids, state[:, np_:, 0])
                break
            confidence = logp
            if not greedy:  # annealed noise on the confidences (MaskGIT's choice temperature)
                confidence = confidence + temperature * (1 - (i + 1) / steps) * noise_fn(tuple(logp.shape))
            confidence = confidence.masked_fill(~masked, float("inf"))  # decided tokens stay decided
            lowest = confidence.argsort(dim=-1)[:, :remain]  # the least confident stay masked
            still = torch.zeros_like(masked).scatter_(1, lowest, True)
            state[:, np_:, 0] = torch.where(masked & ~still, ids, state[:, np_:, 0])
            masked = still
        for q in range(1, q_n):  # finer levels: one pass each, the levels above stay masked
            logits = net(state)[:, np_:, q]  # [B, Nt, C]
            if greedy:
                ids = logits.argmax(-1)
            else:
                ids = (self._topk_filter(logits) / temperature + noise_fn(tuple(logits.shape))).argmax(-1)
            state[:, np_:, q] = ids
        return state

    # ------------------------------------------------------------------ checkpoints
    def save_pretrained(self, folder: str | Path) -> Path:
        """Our format: ``config.yaml`` (SoundStormModelConfig) + ``model.safetensors``."""
        from safetensors.torch import save_file

        from engine.config import save_yaml_dataclass

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_yaml_dataclass(self.cfg, folder / CONFIG_FILE)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, str(folder / WEIGHTS_FILE))
        return folder

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        filename: str | None = None,
        codec: str | None = None,
        device: str | torch.device = "cpu",
        checkpoint_codec: str | None = None,
        heads: int | None = None,
    ) -> "SoundStorm":
        """Load our folder (config.yaml + model.safetensors), a public checkpoint file, a folder
        holding ``filename``, or hub id + ``filename`` (cache first; downloads unless offline).

        ``codec``: the codec the caller will decode with; a model trained on another is refused.
        ``checkpoint_codec`` / ``heads``: what a public checkpoint was trained on / its head count,
        when the file name and shapes do not tell (see ``convert_soundstorm``)."""
        from engine.hub import locate_files, resolve_files
        from engine.perceptual.convert_soundstorm import load_public_soundstorm

        p = Path(str(path)).expanduser()
        if p.is_file():
            model = load_public_soundstorm(p, codec=checkpoint_codec, heads=heads)
        elif all(locate_files(path, [CONFIG_FILE, WEIGHTS_FILE]).values()):
            model = cls._load_ours(*resolve_files(path, [CONFIG_FILE, WEIGHTS_FILE], what="SoundStorm"))
        elif filename:
            (ckpt,) = resolve_files(path, [filename], what="SoundStorm checkpoint")
            model = load_public_soundstorm(ckpt, codec=checkpoint_codec, heads=heads, source=f"{path}/{filename}")
        else:
            if p.is_dir():
                raise ModelUnavailableError(
                    f"SoundStorm: {p} holds neither {CONFIG_FILE} + {WEIGHTS_FILE} (our format) nor a named checkpoint; "
                    "point perceptual.soundstorm.path at a training run's final/ folder or set perceptual.soundstorm.filename"
                )
            (cfg_path, weights) = resolve_files(path, [CONFIG_FILE, WEIGHTS_FILE], what="SoundStorm")
            model = cls._load_ours(cfg_path, weights)
        if codec is not None and model.cfg.codec != codec:
            raise ModelUnavailableError(
                f"the SoundStorm model in {path} was trained on the {model.cfg.codec!r} codec, but the config uses {codec!r}; "
                "use the matching codec (each codec has its own codebooks)"
            )
        return model.to(device).eval()

    @classmethod
    def _load_ours(cls, cfg_path: Path, weights: Path) -> "SoundStorm":
        from safetensors.torch import load_file

        from engine.config import load_yaml_dataclass

        model = cls(load_yaml_dataclass(SoundStormModelConfig, cfg_path))
        try:
            model.load_state_dict(load_file(str(weights)), strict=True)
        except RuntimeError as exc:
            raise ModelUnavailableError(f"SoundStorm weights {weights} do not match {cfg_path}: {exc}") from exc
        return model
