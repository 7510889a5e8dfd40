"""Public SoundStorm checkpoints -> our SoundStorm, loaded strictly.

Two naming versions of the same network exist: the SpeechGPT-Gen repository keeps the Conformer
under ``net.net.`` (class BackboneWrapper), AnyGPT and the soundstorm-speechtokenizer package
under ``net.conformer.`` (ConformerWrapper). Everything else has the same names:
``net.code_embeds``, ``net.heads.0``, ``net.to_logits.0`` (LayerNorm), ``net.to_logits.2``
(per-level weight [Q, D, C] and bias [1, 1, Q, C]) and ``semantic_token_emb``.

What the tensors do not tell is taken from a ``model_config.yml`` / ``config.yaml`` /
``config.json`` next to the checkpoint when present, otherwise from the variant:
- head count (AnyGPT layout: 8 heads of 128 as in AnyGPT's and USLM's code; SpeechGPT-Gen
  layout: 16 heads of dim/16 as in its yaml), overridable with ``heads=``;
- semantic pad id (1024 for AnyGPT's code, -1 for SpeechGPT-Gen's);
- the codec the model was trained on: ``hubert_avg`` (the original SpeechTokenizer) for the USLM
  checkpoint (a path naming USLM or LibriSpeech), ``snake`` otherwise (AnyGPT's MLS model, the
  SpeechGPT-Gen ``spt_snake`` config); overridable with ``codec=``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from engine.errors import ModelUnavailableError
from engine.perceptual.conformer import ConformerConfig
from engine.perceptual.convert import convert_conformer_state
from engine.perceptual.soundstorm import SoundStorm, SoundStormModelConfig

PREFIXES = {"anygpt": "net.conformer.", "speechgpt_gen": "net.net."}
DEFAULT_HEADS = {"anygpt": 8, "speechgpt_gen": 16}
SEMANTIC_PAD = {"anygpt": 1024, "speechgpt_gen": -1}
SIDECARS = ("model_config.yml", "model_config.yaml", "config.yml", "config.yaml", "config.json")
EXPECTED_CODEBOOK, EXPECTED_LEVELS = 1024, 7  # SpeechTokenizer: 1024 codes, RVQ-2..8
_PLAIN = {
    "net.code_embeds.weight": "code_embeds.weight",
    "net.heads.0.weight": "heads.weight",
    "net.heads.0.bias": "heads.bias",
    "net.to_logits.0.weight": "logits_norm.weight",
    "net.to_logits.0.bias": "logits_norm.bias",
    "net.to_logits.2.weight": "logits_weight",
    "semantic_token_emb.weight": "semantic_emb.weight",
}
_BIAS = "net.to_logits.2.bias"


def unwrap_state(obj: Any) -> dict[str, Tensor]:
    """A bare state dict, or one wrapped as ``{'model'|'state_dict'|'module': {...}}`` (also
    nested, e.g. a trainer package); ``module.`` prefixes (DataParallel) are removed."""
    for _ in range(3):
        if not isinstance(obj, Mapping) or any(str(k).removeprefix("module.").startswith(("net.", "semantic_token_emb")) for k in obj):
            break
        inner = next((obj[k] for k in ("model", "state_dict", "module", "net") if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise ModelUnavailableError("not a SoundStorm checkpoint: expected a state dict (name -> tensor)")
    return {str(k).removeprefix("module."): v for k, v in obj.items() if isinstance(v, Tensor)}


def detect_variant(state: Mapping[str, Tensor]) -> str:
    """``anygpt`` (``net.conformer.*``) or ``speechgpt_gen`` (``net.net.*``)."""
    for variant, prefix in PREFIXES.items():
        if any(k.startswith(prefix) for k in state):
            return variant
    raise ModelUnavailableError(
        "not a SoundStorm checkpoint: no net.conformer.* (AnyGPT / soundstorm-speechtokenizer) or net.net.* "
        "(SpeechGPT-Gen) parameters; a flow-matching checkpoint belongs in perceptual.flow.path"
    )


def convert_soundstorm_state(state: Mapping[str, Tensor], variant: str | None = None) -> dict[str, Tensor]:
    """Public parameter names -> ours (tensors shared, not copied)."""
    variant = variant or detect_variant(state)
    try:
        out = convert_conformer_state(state, PREFIXES[variant], "backbone.")
    except KeyError as exc:
        raise ModelUnavailableError(f"SoundStorm checkpoint: {exc.args[0]}") from exc
    for src, dst in _PLAIN.items():
        if src not in state:
            raise ModelUnavailableError(f"SoundStorm checkpoint lacks {src}")
        out[dst] = state[src]
    if _BIAS not in state:
        raise ModelUnavailableError(f"SoundStorm checkpoint lacks {_BIAS}")
    bias = state[_BIAS]
    out["logits_bias"] = bias.reshape(bias.shape[-2], bias.shape[-1])  # [1, 1, Q, C] -> [Q, C]
    extra = [k for k in state if k not in _PLAIN and k != _BIAS and not k.startswith(PREFIXES[variant])]
    if extra:
        raise ModelUnavailableError(f"unexpected SoundStorm parameters (grouped quantizers or another model?): {extra[:5]}")
    return out


def _find_dict_with(obj: Any, key: str) -> dict | None:
    if isinstance(obj, dict):
        if key in obj and not isinstance(obj[key], dict):
            return obj
        for value in obj.values():
            found = _find_dict_with(value, key)
            if found is not None:
                return found
    return None


def read_sidecar(checkpoint: str | Path) -> dict:
    """Backbone settings from a config file next to a public checkpoint: ``heads``, ``dim_head``,
    ``semantic_pad_id`` where given ({} when there is no such file)."""
    folder = Path(checkpoint).parent
    for name in SIDECARS:
        path = folder / name
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        if name.endswith(".json"):
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
        found: dict = {}
        backbone = _find_dict_with(data, "heads")
        if backbone is not None:
            found["heads"] = int(backbone["heads"])
            if backbone.get("dim_head") is not None:
                found["dim_head"] = int(backbone["dim_head"])
        top = _find_dict_with(data, "semantic_pad_id")
        if top is not None:
            found["semantic_pad_id"] = int(top["semantic_pad_id"])
        if found:
            return found
    return {}


def guess_codec(source: str | Path) -> str:
    """The codec a public checkpoint was trained on, from where it comes from (see module doc)."""
    text = str(source).lower()
    return "hubert_avg" if ("uslm" in text or "librispeech" in text) else "snake"


def config_from_state(
    state: Mapping[str, Tensor],
    variant: str,
    heads: int | None = None,
    codec: str = "snake",
    semantic_pad_id: int | None = None,
) -> SoundStormModelConfig:
    """Sizes read off the tensors; head count and pad id from the variant unless given."""
    prefix = PREFIXES[variant]
    for key in ("net.to_logits.2.weight", "semantic_token_emb.weight", f"{prefix}layers.0.attn.fn.to_q.weight"):
        if key not in state:
            raise ModelUnavailableError(f"SoundStorm checkpoint lacks {key}")
    q, dim, c = state["net.to_logits.2.weight"].shape
    depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(rf"^{re.escape(prefix)}layers\.(\d+)\.", k)))
    inner = state[f"{prefix}layers.0.attn.fn.to_q.weight"].shape[0]
    heads = heads or DEFAULT_HEADS[variant]
    if inner % heads:
        raise ModelUnavailableError(f"attention width {inner} is not divisible by {heads} heads; pass the checkpoint's head count (heads=)")
    return SoundStormModelConfig(
        backbone=ConformerConfig(dim=int(dim), depth=depth, heads=heads, dim_head=inner // heads),
        codebook_size=int(c),
        num_quantizers=int(q),
        num_semantic_ids=int(state["semantic_token_emb.weight"].shape[0]),
        semantic_pad_id=SEMANTIC_PAD[variant] if semantic_pad_id is None else semantic_pad_id,
        mode=variant,
        codec=codec,
    )


def soundstorm_from_state(state: Mapping[str, Tensor], cfg: SoundStormModelConfig | None = None, variant: str | None = None) -> SoundStorm:
    """Build our model from a public state dict and load it strictly."""
    variant = variant or detect_variant(state)
    cfg = cfg or config_from_state(state, variant)
    model = SoundStorm(cfg)
    try:
        model.load_state_dict(convert_soundstorm_state(state, variant), strict=True)
    except RuntimeError as exc:
        raise ModelUnavailableError(f"SoundStorm checkpoint does not fit the model read off its shapes: {exc}") from exc
    return model.eval()


def check_sizes(cfg: SoundStormModelConfig, where: str) -> None:
    """A public checkpoint must predict SpeechTokenizer's RVQ-2..8 (7 levels x 1024 codes)."""
    if cfg.codebook_size != EXPECTED_CODEBOOK or cfg.num_quantizers != EXPECTED_LEVELS or cfg.num_semantic_ids != EXPECTED_CODEBOOK:
        raise ModelUnavailableError(
            f"{where}: the checkpoint predicts {cfg.num_quantizers} levels x {cfg.codebook_size} codes from "
            f"{cfg.num_semantic_ids} RVQ-1 ids, but SpeechTokenizer needs {EXPECTED_LEVELS} levels (RVQ-2..8) x "
            f"{EXPECTED_CODEBOOK} codes from {EXPECTED_CODEBOOK} ids; use a SoundStorm trained on SpeechTokenizer codes"
        )


def load_public_soundstorm(
    path: str | Path,
    codec: str | None = None,
    heads: int | None = None,
    source: str | None = None,
) -> SoundStorm:
    """A public checkpoint file (bare state dict or wrapped) -> our model in eval mode.
    ``source``: where it came from (hub id/filename), used to tell which codec it belongs to."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise ModelUnavailableError(f"SoundStorm checkpoint {path} does not exist") from exc
    except Exception as exc:
        raise ModelUnavailableError(f"could not read SoundStorm checkpoint {path} ({type(exc).__name__}: {exc}); is it a PyTorch state dict?") from exc
    state = unwrap_state(obj)
    variant = detect_variant(state)
    side = read_sidecar(path)
    heads = heads or side.get("heads")
    cfg = config_from_state(
        state, variant, heads=heads, codec=codec or guess_codec(f"{source or ''} {path}"), semantic_pad_id=side.get("semantic_pad_id")
    )
    if "dim_head" in side and side["dim_head"] != cfg.backbone.head_dim:
        raise ModelUnavailableError(f"{path}: config file says dim_head {side['dim_head']} but the weights give {cfg.backbone.head_dim}")
    check_sizes(cfg, str(path))
    return soundstorm_from_state(state, cfg, variant)
