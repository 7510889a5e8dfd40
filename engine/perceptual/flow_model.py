"""The flow-matching perceptual model: estimator network, normalisation, checkpoints, generation.

Estimator input per frame (official layout): concat[x_t, (semantic,) context, t] -> Linear ->
Conformer (U-Net skips) -> Linear (no bias) -> velocity. ``t`` is the raw flow time as one
channel (``time_embedding="raw"``, needed for official checkpoints) or, for our own models on
request, a sinusoidal embedding through a small MLP added to every frame
(``time_embedding="sinusoidal"``). The input projection is split so that the context/semantic
part is computed once per generate call, not once per ODE step.

Checkpoint format: ``config.yaml`` (FlowModelConfig) + ``model.safetensors``; a folder in the
authors' format (``model_config.yml`` + ``ConditionalFlowMatcher_best_dev.pt``) is converted on
load (engine.perceptual.convert).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.errors import ModelUnavailableError
from engine.perceptual.cfm import ConditionalFlowMatching, FlowChain
from engine.perceptual.conformer import Conformer, ConformerConfig
from engine.perceptual.solvers import interpolate

SIZES: dict[str, ConformerConfig] = {
    # paper Appendix A: 1024 hidden, 16 heads, 4096 FFN; 6 (small), 12 (base), 24 (large) layers
    "tiny": ConformerConfig(dim=64, depth=4, heads=4, conv_kernel=31, unet=True),
    # the demo profile (assets/configs/train/flow_demo.yaml): trained here on 2 CPU cores in about 2 hours
    "demo": ConformerConfig(dim=192, depth=6, heads=4, ff_mult=4, conv_kernel=31, unet=True),
    "small": ConformerConfig(dim=1024, depth=6, heads=16, unet=True),
    "base": ConformerConfig(dim=1024, depth=12, heads=16, unet=True),
    "large": ConformerConfig(dim=1024, depth=24, heads=16, unet=True),
}

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"
ADAPTED_DECODER_FILE = "codec_decoder.safetensors"  # optional: the codec's decoder adapted to this model's output


@dataclass
class FlowModelConfig:
    feature_dim: int = 1024  # the codec's embedding width
    backbone: ConformerConfig = field(default_factory=lambda: dataclasses.replace(SIZES["base"]))
    chain: str = "implicit"  # implicit | explicit
    concat_semantic: bool = False  # also feed the semantic embedding as input channels
    sigma_min: float = 0.0
    max_prompt_frames: int = 300
    prompt_dropout: float = 0.0  # > 0 trains for classifier-free guidance on the prompt
    codec: str = "hubert_avg"  # the codec whose embeddings this model was trained on
    official_mode: bool = False  # converted from the authors' format (informational)
    time_embedding: str = "raw"  # raw: t as one input channel (official) | sinusoidal: embedding + MLP
    # where the prior's unit-variance noise lives. The network always works on features standardised
    # per dimension with feature_mean/std; the prior's mean is the semantic embedding in both cases.
    #   standardized: x0 ~ N(zs, I) in the standardised space (noise std 1 per standardised dimension)
    #   raw: x0 ~ N(zs, I) in the codec's raw embedding space, as the paper writes it (noise std
    #        1 / feature_std per standardised dimension). Official checkpoints have identity stats: the same.
    prior_space: str = "standardized"  # standardized | raw

    @property
    def semantic_input(self) -> bool:
        """The semantic embedding is an input channel when asked, or when no prior carries it."""
        return self.concat_semantic or self.chain == "explicit"

    @classmethod
    def preset(cls, size: str, feature_dim: int, codec: str, **kwargs) -> "FlowModelConfig":
        if size not in SIZES:
            raise ValueError(f"unknown flow model size {size!r}; choose one of {', '.join(SIZES)}")
        backbone = dataclasses.replace(SIZES[size])
        return cls(feature_dim=feature_dim, backbone=backbone, codec=codec, **kwargs)

    def __post_init__(self) -> None:
        if self.chain not in ("implicit", "explicit"):
            raise ValueError(f"unknown chain {self.chain!r}; use implicit or explicit")
        if self.time_embedding not in ("raw", "sinusoidal"):
            raise ValueError(f"unknown time embedding {self.time_embedding!r}; use raw or sinusoidal")
        if self.prior_space not in ("standardized", "raw"):
            raise ValueError(f"unknown prior space {self.prior_space!r}; use standardized or raw")


TIME_FEATURES = 256  # width of the sinusoidal time features (time_embedding="sinusoidal")


def sinusoidal_time(t: Tensor, width: int = TIME_FEATURES, scale: float = 1000.0) -> Tensor:
    """t [B] in [0, 1] -> [B, width] sin/cos features of ``scale * t`` (log-spaced frequencies)."""
    half = width // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = scale * t.float()[:, None] * freqs[None, :]  # [B, half]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class FlowEstimator(nn.Module):
    """Vector field v(x_t, t | context, semantic). Shapes [B, N, D]."""

    def __init__(self, cfg: FlowModelConfig):
        super().__init__()
        f, d = cfg.feature_dim, cfg.backbone.dim
        self.feature_dim = f
        self.semantic_input = cfg.semantic_input
        self.raw_time = cfg.time_embedding == "raw"
        blocks = 3 if self.semantic_input else 2
        self.to_embed = nn.Linear(f * blocks + (1 if self.raw_time else 0), d)
        if not self.raw_time:
            self.time_mlp = nn.Sequential(nn.Linear(TIME_FEATURES, d), nn.SiLU(), nn.Linear(d, d))
        self.backbone = Conformer(cfg.backbone)
        self.to_pred = nn.Linear(d, f, bias=False)

    def _columns(self) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
        """Split of to_embed's weight by input block: x, semantic, context, raw t (or None)."""
        w, f = self.to_embed.weight, self.feature_dim
        k = 3 if self.semantic_input else 2
        w_t = w[:, k * f] if self.raw_time else None
        if self.semantic_input:
            return w[:, :f], w[:, f : 2 * f], w[:, 2 * f : 3 * f], w_t
        return w[:, :f], None, w[:, f : 2 * f], w_t

    def time_term(self, t: Tensor) -> Tensor:
        """Contribution of the flow time to the backbone input: t [B] -> [B, 1, dim]."""
        if self.raw_time:
            return t[:, None, None] * self._columns()[3]
        return self.time_mlp(sinusoidal_time(t).to(self.to_embed.weight.dtype))[:, None, :]

    def condition(self, context: Tensor, semantic: Tensor | None) -> Tensor:
        """Projection of everything that stays fixed during one ODE solve -> [B, N, dim]."""
        _, w_sem, w_ctx, _ = self._columns()
        dtype = w_ctx.dtype  # half-precision weights: the network runs in their dtype
        cond = F.linear(context.to(dtype), w_ctx, self.to_embed.bias)
        if w_sem is not None:
            if semantic is None:
                raise ValueError("this model needs the semantic embedding as input")
            cond = cond + F.linear(semantic.to(dtype), w_sem)
        return cond

    def velocity(self, x: Tensor, t: Tensor, cond: Tensor, mask: Tensor | None) -> Tensor:
        """x [B, N, F], t [B] (or scalar) -> v [B, N, F] in x's dtype (the ODE state keeps its precision)."""
        w_x = self._columns()[0]
        t = torch.as_tensor(t, dtype=w_x.dtype, device=x.device).reshape(-1)
        t = t.expand(x.shape[0]) if t.numel() == 1 else t
        h = F.linear(x.to(w_x.dtype), w_x) + cond + self.time_term(t)  # [B, N, dim]
        return self.to_pred(self.backbone(h, mask)).to(x.dtype)

    def forward(self, x: Tensor, t: Tensor, context: Tensor, semantic: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        return self.velocity(x, t, self.condition(context, semantic), mask)


class FlowModel(nn.Module):
    """Estimator + flow-matching wrapper + feature normalisation statistics."""

    def __init__(self, cfg: FlowModelConfig):
        super().__init__()
        self.cfg = cfg
        self.cfm = ConditionalFlowMatching(
            FlowEstimator(cfg), FlowChain.named(cfg.chain), cfg.sigma_min, cfg.max_prompt_frames, cfg.prompt_dropout
        )
        self.register_buffer("feature_mean", torch.zeros(cfg.feature_dim))
        self.register_buffer("feature_std", torch.ones(cfg.feature_dim))
        self._velocity = None  # a compiled estimator velocity (enable_compile), or None: eager
        self.compile_bucket = 0  # with it, sequences are padded to a multiple of this many frames

    def enable_compile(self, mode: str = "default", bucket_frames: int = 250) -> "FlowModel":
        """Run ``generate``'s network evaluations through ``torch.compile`` (``mode`` "reduce-overhead"
        = CUDA graphs). Sequences are padded (and masked) to a multiple of ``bucket_frames`` so that a
        few fixed shapes are compiled, each once; masked frames leave the valid ones unchanged. The
        first call of each bucket pays the compile time (on a 2-core CPU about 1.5 minutes)."""
        if bucket_frames < 1:
            raise ValueError("bucket_frames must be at least 1")
        self._velocity = torch.compile(self.estimator.velocity, mode=mode, dynamic=False)
        self.compile_bucket = bucket_frames
        return self

    @property
    def estimator(self) -> FlowEstimator:
        return self.cfm.estimator  # type: ignore[return-value]

    def cast_weights(self, dtype: torch.dtype) -> "FlowModel":
        """Run the network in ``dtype`` (e.g. bfloat16 on a GPU). Only parameters change: the
        feature statistics stay float32, and so do the ODE state and ``generate``'s outputs."""
        for param in self.parameters():
            param.data = param.data.to(dtype)
        return self

    # -------------------------------------------------------------- normalisation
    def set_feature_stats(self, mean: Tensor, std: Tensor) -> None:
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std.clamp(min=1e-5))

    def normalize(self, emb: Tensor) -> Tensor:
        return (emb - self.feature_mean) / self.feature_std

    def denormalize(self, emb: Tensor) -> Tensor:
        return emb * self.feature_std + self.feature_mean

    def prior_noise_scale(self) -> Tensor:
        """Std of the prior's noise per standardised dimension [F]: ones (``prior_space`` standardized)
        or 1 / feature_std (raw: unit variance in the codec's raw embedding space)."""
        if self.cfg.prior_space == "raw":
            return 1.0 / self.feature_std
        return torch.ones_like(self.feature_std)

    # -------------------------------------------------------------- training
    def loss(
        self, complete: Tensor, semantic: Tensor, lengths: Tensor, generator: torch.Generator | None = None, prompt_lengths: Tensor | None = None
    ) -> tuple[Tensor, dict]:
        """complete/semantic embeddings [B, N, F] (raw codec space), lengths [B]."""
        return self.cfm.loss(self.normalize(complete), self.normalize(semantic), lengths, generator, prompt_lengths,
                             noise_scale=self.prior_noise_scale())

    # -------------------------------------------------------------- inference
    @torch.no_grad()
    def generate(
        self,
        semantic: list[Tensor] | Tensor,
        prompt_complete: list[Tensor] | Tensor | None = None,
        prompt_semantic: list[Tensor] | Tensor | None = None,
        *,
        steps: int = 16,
        method: str = "midpoint",
        schedule: str = "uniform",
        guidance_scale: float = 0.0,
        temperature: float = 1.0,
        seed: int | None = None,
        noise: list[Tensor] | None = None,
    ) -> list[Tensor]:
        """Complete embeddings for a batch of targets.

        semantic: per item the target RVQ-1 embedding [T_i, F]; prompt_complete/prompt_semantic:
        per item the voice prompt's complete and RVQ-1 embeddings [P_i, F] (or None, per item or
        for the whole batch). Items are laid out as [prompt ; target ; padding] with a key padding
        mask. Noise is drawn per item (seed + i), so an item gives the same result alone or in a
        padded batch. Returns per item the complete embedding [T_i, F] (float32, CPU).
        """
        sem = _as_list(semantic)
        b = len(sem)
        pc = _as_list(prompt_complete) if prompt_complete is not None else [None] * b
        ps = _as_list(prompt_semantic) if prompt_semantic is not None else [None] * b
        if len(pc) != b or len(ps) != b:
            raise ValueError(f"{b} targets but {len(pc)} prompt complete and {len(ps)} prompt semantic embeddings")
        dev = self.feature_mean.device
        f = self.cfg.feature_dim
        p_len = [0 if p is None else p.shape[0] for p in pc]
        t_len = [s.shape[0] for s in sem]
        n = max(p + t for p, t in zip(p_len, t_len))
        if self._velocity is not None:
            n = -(-n // self.compile_bucket) * self.compile_bucket  # a fixed shape per bucket
        context = torch.zeros(b, n, f, device=dev)
        semantic_full = torch.zeros(b, n, f, device=dev)
        y0 = torch.zeros(b, n, f, device=dev)
        mask = torch.zeros(b, n, dtype=torch.bool, device=dev)
        scale = self.prior_noise_scale()  # [F]
        for i in range(b):
            p, t = p_len[i], t_len[i]
            if p:
                if ps[i] is None:
                    raise ValueError("prompt_semantic is needed with prompt_complete")
                context[i, :p] = self.normalize(pc[i].to(dev).float())
                semantic_full[i, :p] = self.normalize(ps[i].to(dev).float())
            semantic_full[i, p : p + t] = self.normalize(sem[i].to(dev).float())
            mask[i, : p + t] = True
            if noise is not None:
                eps = noise[i].to(dev)
            else:
                gen = torch.Generator().manual_seed(seed + i) if seed is not None else None
                eps = torch.randn(p + t, f, generator=gen)
            y0[i, : p + t] = temperature * eps.to(dev) * scale
        y0 = y0 + self.cfm.prior_mean(semantic_full) * mask[..., None]
        x1 = self.cfm.sample(y0, context, semantic_full, None if bool(mask.all()) else mask, steps, method, schedule, guidance_scale,
                             velocity=self._velocity)
        if self.cfg.chain == "explicit":
            x1 = x1 + semantic_full
        out = self.denormalize(x1)
        return [out[i, p_len[i] : p_len[i] + t_len[i]].cpu() for i in range(b)]

    @torch.no_grad()
    def generate_padded(
        self,
        semantic: Tensor,
        lengths: Tensor | None = None,
        prompt_complete: Tensor | None = None,
        prompt_semantic: Tensor | None = None,
        prompt_lengths: Tensor | None = None,
        **kwargs,
    ) -> tuple[Tensor, Tensor]:
        """Padded-batch form of :meth:`generate` (same keyword options).

        semantic [B, T, F] with ``lengths`` [B] valid frames (None: all T); prompt_complete /
        prompt_semantic [B, P, F] with ``prompt_lengths`` [B] (None: all P; 0: no prompt for
        that item). Returns the complete embedding [B, T, F] (zeros on padding) and the mask
        [B, T] (True = valid frame). Each item gives what it gives alone.
        """
        b, t_max, f = semantic.shape
        t_len = [t_max] * b if lengths is None else [int(n) for n in lengths]
        sem = [semantic[i, : t_len[i]] for i in range(b)]
        pc = ps = None
        if prompt_complete is not None:
            if prompt_semantic is None:
                raise ValueError("prompt_semantic is needed with prompt_complete")
            p_max = prompt_complete.shape[1]
            p_len = [p_max] * b if prompt_lengths is None else [int(n) for n in prompt_lengths]
            pc = [prompt_complete[i, : p_len[i]] if p_len[i] else None for i in range(b)]
            ps = [prompt_semantic[i, : p_len[i]] if p_len[i] else None for i in range(b)]
        items = self.generate(sem, pc, ps, **kwargs)
        out = torch.zeros(b, t_max, f, dtype=items[0].dtype)
        mask = torch.zeros(b, t_max, dtype=torch.bool)
        for i, item in enumerate(items):
            out[i, : t_len[i]] = item
            mask[i, : t_len[i]] = True
        return out, mask

    @torch.no_grad()
    def trajectory(self, y0: Tensor, context: Tensor, semantic: Tensor, times: Tensor, step_size: float = 0.0625, method: str = "midpoint") -> Tensor:
        """Official-compatible solve: fixed grid of ``step_size`` from 0 to 1, states at ``times``
        by linear interpolation (torchdiffeq fixed-grid semantics). Normalised space; [len(times), B, N, F]."""
        steps = round(1.0 / step_size)
        grid_states = self.cfm.sample(y0, context, semantic, None, steps, method, "uniform", 0.0, keep_all=True)
        grid = torch.linspace(0, 1, steps + 1)
        return interpolate(grid, grid_states, times.float().cpu())

    # -------------------------------------------------------------- checkpoints
    def save_pretrained(self, folder: str | Path) -> Path:
        from safetensors.torch import save_file

        from engine.config import save_yaml_dataclass

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_yaml_dataclass(self.cfg, folder / CONFIG_FILE)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": "speechgpt-gen-flow", "codec": self.cfg.codec})
        return folder

    @classmethod
    def from_pretrained(cls, path: str | Path, codec: str | None = None, device: str | torch.device = "cpu") -> "FlowModel":
        """Load our format or the official one, from a folder or a hub id. ``codec``: refuse a model
        trained on another codec."""
        from engine.hub import locate_files, resolve_files

        official = locate_files(path, ["model_config.yml", "ConditionalFlowMatcher_best_dev.pt"])
        if all(official.values()) and not all(locate_files(path, [CONFIG_FILE, WEIGHTS_FILE]).values()):
            from engine.perceptual.convert import load_official_flow

            model = load_official_flow(official["model_config.yml"], official["ConditionalFlowMatcher_best_dev.pt"])
        else:
            from safetensors.torch import load_file

            from engine.config import load_yaml_dataclass

            cfg_path, weights = resolve_files(path, [CONFIG_FILE, WEIGHTS_FILE], what="flow-matching perceptual model")
            cfg = load_yaml_dataclass(FlowModelConfig, cfg_path)
            model = cls(cfg)
            model.load_state_dict(load_file(str(weights)), strict=True)
        if codec is not None and model.cfg.codec != codec:
            raise ModelUnavailableError(
                f"the flow model in {path} was trained on the {model.cfg.codec!r} codec, but the config uses {codec!r}; "
                f"each codec has its own codebooks. Use the matching codec or a model trained on {codec!r}"
            )
        return model.to(device).eval()


def _as_list(x: list[Tensor] | Tensor) -> list[Tensor]:
    if isinstance(x, Tensor):
        return list(x) if x.dim() == 3 else [x]
    return list(x)
