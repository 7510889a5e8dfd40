"""Public SoundStorm checkpoints -> our SoundStorm, loaded strictly.

Two naming versions exist (same network): the SpeechGPT-Gen repository (and USLM) keep the
Conformer under ``net.net.``, AnyGPT under ``net.conformer.``. Head counts are not visible in the
shapes, so they come from the variant (AnyGPT: 8 heads of 128; SpeechGPT-Gen: 16 heads of dim/16)
unless given.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor

from engine.errors import ModelUnavailableError
from engine.perceptual.conformer import ConformerConfig
from engine.perceptual.convert import convert_conformer_state
from engine.perceptual.soundstorm import SoundStorm, SoundStormModelConfig

PREFIXES = {"anygpt": "net.conformer.", "speechgpt_gen": "net.net."}


def detect_variant(state: Mapping[str, Tensor]) -> str:
    for variant, prefix in PREFIXES.items():
        if any(k.startswith(prefix) for k in state):
            return variant
    raise ModelUnavailableError("not a SoundStorm checkpoint: no net.conformer.* (AnyGPT) or net.net.* (SpeechGPT-Gen) parameters")


def convert_soundstorm_state(state: Mapping[str, Tensor], variant: str | None = None) -> dict[str, Tensor]:
    variant = variant or detect_variant(state)
    out = convert_conformer_state(state, PREFIXES[variant], "backbone.")
    plain = {
        "net.code_embeds.weight": "code_embeds.weight",
        "net.heads.0.weight": "heads.weight",
        "net.heads.0.bias": "heads.bias",
        "net.to_logits.0.weight": "logits_norm.weight",
        "net.to_logits.0.bias": "logits_norm.bias",
        "net.to_logits.2.weight": "logits_weight",
        "semantic_token_emb.weight": "semantic_emb.weight",
    }
    for src, dst in plain.items():
        if src not in state:
            raise ModelUnavailableError(f"SoundStorm checkpoint lacks {src}")
        out[dst] = state[src]
    bias = state.get("net.to_logits.2.bias")
    if bias is None:
        raise ModelUnavailableError("SoundStorm checkpoint lacks net.to_logits.2.bias")
    out["logits_bias"] = bias.reshape(bias.shape[-2], bias.shape[-1])  # [1, 1, Q, C] -> [Q, C]
    known = set(plain) | {"net.to_logits.2.bias"}
    extra = [k for k in state if k not in known and not k.startswith(PREFIXES[variant])]
    if extra:
        raise ModelUnavailableError(f"unexpected SoundStorm parameters: {extra[:5]}")
    return out


def config_from_state(state: Mapping[str, Tensor], variant: str, heads: int | None = None, codec: str = "snake") -> SoundStormModelConfig:
    """Sizes read off the tensors; head count from the variant unless given."""
    prefix = PREFIXES[variant]
    q, dim, c = state["net.to_logits.2.weight"].shape
    depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(rf"^{re.escape(prefix)}layers\.(\d+)\.", k)))
    inner = state[f"{prefix}layers.0.attn.fn.to_q.weight"].shape[0]
    heads = heads or (8 if variant == "anygpt" else 16)
    if inner % heads:
        raise ModelUnavailableError(f"attention width {inner} is not divisible by {heads} heads; pass heads=")
    return SoundStormModelConfig(
        backbone=ConformerConfig(dim=int(dim), depth=depth, heads=heads, dim_head=inner // heads),
        codebook_size=int(c),
        num_quantizers=int(q),
        num_semantic_ids=int(state["semantic_token_emb.weight"].shape[0]),
        semantic_pad_id=1024 if variant == "anygpt" else -1,
        mode=variant,
        codec=codec,
    )


def soundstorm_from_state(state: Mapping[str, Tensor], cfg: SoundStormModelConfig | None = None, variant: str | None = None) -> SoundStorm:
    variant = variant or detect_variant(state)
    cfg = cfg or config_from_state(state, variant)
    model = SoundStorm(cfg)
    model.load_state_dict(convert_soundstorm_state(state, variant), strict=True)
    return model.eval()


def load_public_soundstorm(path: str | Path) -> SoundStorm:
    """A public checkpoint file (bare state dict, or wrapped in {'model'|'state_dict': ...})."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelUnavailableError(f"could not read SoundStorm checkpoint {path}: {exc}") from exc
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model = soundstorm_from_state(state)
    if model.cfg.codebook_size != 1024 or model.cfg.num_quantizers != 7:
        raise ModelUnavailableError(
            f"{path}: codebook {model.cfg.codebook_size} x {model.cfg.num_quantizers} levels does not fit SpeechTokenizer's 1024 x 7 (RVQ-2..8)"
        )
    return model
