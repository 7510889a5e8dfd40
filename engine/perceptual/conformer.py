"""Conformer backbone shared by the flow-matching model and SoundStorm.

One block (pre-norm, macaron):  x += FF1/2;  x += MHSA(RoPE);  x += Conv;  x += FF2/2;  x = LN(x).
With ``unet=True`` the first ``c`` blocks push their outputs on a stack and the last ``c`` blocks
first fuse ``concat[x, stack.pop()]`` through a linear layer (U-Net style long skips), where
``c = L // 2 - (1 if L is even else 0)``; the blocks in between form the bottleneck.

The maths follow the description of the authors' models in ``tests/fixtures/README.md``
(key padding mask, GLU conv module with a channel norm instead of BatchNorm, rotate-half RoPE).
Parameter names are our own; ``engine.perceptual.convert`` maps official names onto them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class ConformerConfig:
    """Size of a Conformer stack."""

    dim: int = 1024
    depth: int = 12
    heads: int = 16
    dim_head: int | None = None  # None: dim // heads
    ff_mult: int = 4
    conv_expansion: int = 2
    conv_kernel: int = 31
    dropout: float = 0.0
    unet: bool = False

    @property
    def head_dim(self) -> int:
        return self.dim_head if self.dim_head is not None else self.dim // self.heads

    def num_skips(self) -> int:
        """Number of contracting (and expanding) blocks when ``unet`` is set."""
        if not self.unet:
            return 0
        return self.depth // 2 - (1 if self.depth % 2 == 0 else 0)


def rope_angles(num_frames: int, head_dim: int, device: torch.device, base: float = 10000.0) -> Tensor:
    """Angle table [N, head_dim]: per-position angles written twice back to back."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    pos = torch.arange(num_frames, device=device, dtype=torch.float32)
    freqs = pos[:, None] * inv_freq[None, :]  # [N, dh/2]
    return torch.cat([freqs, freqs], dim=-1)  # [N, dh]


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate-half RoPE over the full head width. x: [B, H, N, dh]; cos/sin: [N, dh]."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, dim * mult)
        self.down = nn.Linear(dim * mult, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.dropout(F.silu(self.up(self.norm(x)), inplace=True))  # in place: one [B, N, 4D] buffer fewer
        return self.dropout(self.down(h))


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dim_head = heads, dim_head
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim)
        self.dropout = dropout

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, attn_mask: Tensor | None) -> Tensor:
        b, n, _ = x.shape
        h = self.norm(x)
        k, v = self.to_kv(h).chunk(2, dim=-1)
        # [B, N, H*dh] -> [B, H, N, dh] (head-major features)
        q, k, v = (t.view(b, n, self.heads, self.dim_head).transpose(1, 2) for t in (self.to_q(h), k, v))
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class ChannelNorm(nn.Module):
    """Normalise each time step over channels; variance clamped at ``eps`` (not added)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, channels, 1))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:  # [B, C, N]
        var, mean = torch.var_mean(x, dim=1, unbiased=False, keepdim=True)
        return (x - mean) * var.clamp(min=self.eps).rsqrt() * self.gamma

    def forward_last(self, x: Tensor) -> Tensor:
        """The same normalisation for channel-last input [B, N, C]. The statistics come from the layer-norm
        kernel (much faster than var_mean here) with no epsilon: its 1/sqrt(var), capped at 1/sqrt(eps),
        is exactly 1/sqrt(max(var, eps))."""
        if torch.is_grad_enabled() and (x.requires_grad or self.gamma.requires_grad):
            # training: the layer-norm kernel's mean/rstd outputs carry no gradient, so take the
            # differentiable route (without this, gradients miss the statistics' terms)
            var, mean = torch.var_mean(x, dim=-1, unbiased=False, keepdim=True)
            return (x - mean) * var.clamp(min=self.eps).rsqrt() * self.gamma.view(-1)
        _, mean, rstd = torch.native_layer_norm(x, (x.shape[-1],), None, None, 0.0)
        return (x - mean) * rstd.clamp(max=self.eps ** -0.5).to(x.dtype) * self.gamma.view(-1)


class ConvModule(nn.Module):
    def __init__(self, dim: int, expansion: int, kernel: int, dropout: float):
        super().__init__()
        channels = dim * expansion
        self.norm = nn.LayerNorm(dim)
        self.pointwise_in = nn.Conv1d(dim, 2 * channels, 1)
        self.depthwise = nn.Conv1d(channels, channels, kernel, groups=channels)
        self.channel_norm = ChannelNorm(channels)
        self.pointwise_out = nn.Conv1d(channels, dim, 1)
        self.dropout = nn.Dropout(dropout)
        self.pad = (kernel // 2, kernel // 2 - (kernel + 1) % 2)

    def forward(self, x: Tensor, keep: Tensor | None) -> Tensor:
        """x [B, N, D]; keep [B, 1, N] (1 = valid frame) or None.

        The pointwise convolutions are matrix products in channel-last layout (the same maths as
        the Conv1d modules, whose weights they use, without the slow 1x1-convolution path); only
        the depthwise convolution runs channel-first."""
        h = F.linear(self.norm(x), self.pointwise_in.weight.squeeze(-1), self.pointwise_in.bias)  # [B, N, 2C]
        h = F.glu(h, dim=-1)  # [B, N, C]
        keep_last = None if keep is None else keep.transpose(1, 2)  # [B, N, 1]
        if keep_last is not None:
            h = h * keep_last
        # contiguous again after the depthwise convolution: the channel norm then reduces over adjacent memory
        h = self.depthwise(F.pad(h.transpose(1, 2), self.pad)).transpose(1, 2).contiguous()  # [B, N, C]
        if keep_last is not None:
            h = h * keep_last
        h = self.channel_norm.forward_last(F.silu(h, inplace=True))
        h = F.linear(h, self.pointwise_out.weight.squeeze(-1), self.pointwise_out.bias)
        return self.dropout(h)  # [B, N, D]


class ConformerBlock(nn.Module):
    def __init__(self, cfg: ConformerConfig):
        super().__init__()
        self.ff1 = FeedForward(cfg.dim, cfg.ff_mult, cfg.dropout)
        self.attn = SelfAttention(cfg.dim, cfg.heads, cfg.head_dim, cfg.dropout)
        self.conv = ConvModule(cfg.dim, cfg.conv_expansion, cfg.conv_kernel, cfg.dropout)
        self.ff2 = FeedForward(cfg.dim, cfg.ff_mult, cfg.dropout)
        self.post_norm = nn.LayerNorm(cfg.dim)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, attn_mask: Tensor | None, keep: Tensor | None) -> Tensor:
        x = x + 0.5 * self.ff1(x)
        x = x + self.attn(x, cos, sin, attn_mask)
        x = x + self.conv(x, keep)
        x = x + 0.5 * self.ff2(x)
        return self.post_norm(x)


class Conformer(nn.Module):
    """Stack of Conformer blocks, optionally with U-Net long skips. [B, N, D] -> [B, N, D]."""

    def __init__(self, cfg: ConformerConfig):
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList(ConformerBlock(cfg) for _ in range(cfg.depth))
        self.skip_proj = nn.ModuleList(nn.Linear(2 * cfg.dim, cfg.dim) for _ in range(cfg.num_skips()))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: [B, N, D]; mask: [B, N] bool, True = valid frame (None: all valid)."""
        n = x.shape[1]
        angles = rope_angles(n, self.cfg.head_dim, x.device)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        attn_mask = keep = None
        if mask is not None and not bool(mask.all()):
            attn_mask = mask[:, None, None, :]  # [B, 1, 1, N] keys
            keep = mask[:, None, :].to(x.dtype)  # [B, 1, N]
        c = self.cfg.num_skips()
        depth = len(self.layers)
        skips: list[Tensor] = []
        for i, layer in enumerate(self.layers):
            if c and i >= depth - c:
                x = self.skip_proj[i - (depth - c)](torch.cat([x, skips.pop()], dim=-1))
            x = layer(x, cos, sin, attn_mask, keep)
            if i < c:
                skips.append(x)
        return x
