"""Converters from the authors' checkpoints to our modules.

Official Conformer block names (both SpeechGPT-Gen and AnyGPT repositories) -> ours:
  ff1.fn.norm / ff1.fn.fn.net.0 / ff1.fn.fn.net.3  -> ff1.norm / ff1.up / ff1.down  (same for ff2)
  attn.norm / attn.fn.to_q / to_kv / to_out        -> attn.norm / attn.to_q / to_kv / to_out
  conv.net1.0 / conv.net1.2 / conv.ds_conv.conv    -> conv.norm / conv.pointwise_in / conv.depthwise
  conv.net2.1.gamma / conv.net2.2                  -> conv.channel_norm.gamma / conv.pointwise_out
  soundstorm-speechtokenizer (the USLM checkpoint) keeps the convolution module in one Sequential:
  conv.net.0 / .2 / .4.conv / .6.gamma / .7        -> conv.norm / pointwise_in / depthwise / channel_norm.gamma / pointwise_out
  post_norm                                        -> post_norm
U-Conformer: contracting_layers.i, bottleneck_layers.i, expanding_layers.i are our layers
0..c-1, c..L-c-1, L-c..L-1; projs.j is skip_proj.j.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor

from engine.errors import ModelUnavailableError

_BLOCK_RULES: list[tuple[str, str]] = [
    (r"^(ff[12])\.fn\.norm\.", r"\1.norm."),
    (r"^(ff[12])\.fn\.fn\.net\.0\.", r"\1.up."),
    (r"^(ff[12])\.fn\.fn\.net\.3\.", r"\1.down."),
    (r"^attn\.norm\.", "attn.norm."),
    (r"^attn\.fn\.(to_q|to_kv|to_out)\.", r"attn.\1."),
    (r"^conv\.net1\.0\.", "conv.norm."),
    (r"^conv\.net1\.2\.", "conv.pointwise_in."),
    (r"^conv\.ds_conv\.conv\.", "conv.depthwise."),
    (r"^conv\.net2\.1\.gamma$", "conv.channel_norm.gamma"),
    (r"^conv\.net2\.2\.", "conv.pointwise_out."),
    # soundstorm-speechtokenizer (USLM): the same module as one Sequential
    (r"^conv\.net\.0\.", "conv.norm."),
    (r"^conv\.net\.2\.", "conv.pointwise_in."),
    (r"^conv\.net\.4\.conv\.", "conv.depthwise."),
    (r"^conv\.net\.6\.gamma$", "conv.channel_norm.gamma"),
    (r"^conv\.net\.7\.", "conv.pointwise_out."),
    (r"^post_norm\.", "post_norm."),
]


def convert_block_key(suffix: str) -> str:
    """One official Conformer-block parameter name (after ``layers.i.``) -> ours."""
    for pattern, repl in _BLOCK_RULES:
        if re.match(pattern, suffix):
            return re.sub(pattern, repl, suffix)
    raise KeyError(f"unknown Conformer block parameter {suffix!r}")


def convert_uconformer_state(state: Mapping[str, Tensor], depth: int, src_prefix: str, dst_prefix: str) -> dict[str, Tensor]:
    """Official U-Conformer (``{src_prefix}contracting_layers...``) -> our Conformer keys."""
    c = depth // 2 - (1 if depth % 2 == 0 else 0)
    offsets = {"contracting_layers": 0, "bottleneck_layers": c, "expanding_layers": depth - c}
    out: dict[str, Tensor] = {}
    pattern = re.compile(rf"^{re.escape(src_prefix)}(contracting_layers|bottleneck_layers|expanding_layers)\.(\d+)\.(.+)$")
    for key, value in state.items():
        if not key.startswith(src_prefix):
            continue
        m = pattern.match(key)
        if m:
            index = offsets[m.group(1)] + int(m.group(2))
            out[f"{dst_prefix}layers.{index}.{convert_block_key(m.group(3))}"] = value
            continue
        m = re.match(rf"^{re.escape(src_prefix)}projs\.(\d+)\.(weight|bias)$", key)
        if m:
            out[f"{dst_prefix}skip_proj.{m.group(1)}.{m.group(2)}"] = value
            continue
        raise KeyError(f"unexpected official parameter {key!r}")
    return out


def convert_conformer_state(state: Mapping[str, Tensor], src_prefix: str, dst_prefix: str) -> dict[str, Tensor]:
    """Official plain Conformer (``{src_prefix}layers.i.*``) -> our keys."""
    out: dict[str, Tensor] = {}
    pattern = re.compile(rf"^{re.escape(src_prefix)}layers\.(\d+)\.(.+)$")
    for key, value in state.items():
        if not key.startswith(src_prefix):
            continue
        m = pattern.match(key)
        if not m:
            raise KeyError(f"unexpected official parameter {key!r}")
        out[f"{dst_prefix}layers.{m.group(1)}.{convert_block_key(m.group(2))}"] = value
    return out


# ------------------------------------------------------------------------------ flow model


def flow_config_from_official(model_args: Mapping, codec: str = "snake"):
    """The official ``model_args`` mapping -> our FlowModelConfig."""
    from engine.perceptual.conformer import ConformerConfig
    from engine.perceptual.flow_model import FlowModelConfig

    if model_args.get("backbone_type", "uconformer") != "uconformer":
        raise ModelUnavailableError(f"official backbone {model_args.get('backbone_type')!r} is not supported (only 'uconformer')")
    kw = model_args.get("backbone_kwargs", {})
    if kw.get("adaptive_rmsnorm"):
        raise ModelUnavailableError("official models with adaptive_rmsnorm are not supported")
    # the official block has one dropout per sub-module (0.1 each in the published configs); ours has one
    dropout = max(float(kw.get(k) or 0.0) for k in ("ff_dropout", "conv_dropout", "attn_dropout"))
    backbone = ConformerConfig(dim=int(kw["dim"]), depth=int(kw["depth"]), heads=int(kw["heads"]), dropout=dropout, unet=True)
    start_from_cond = bool(model_args.get("start_from_cond", False))
    concat = bool(model_args.get("concat_cond", False))
    # the yaml spells it `explict`; the code reads `explicit` (it only changes the training target)
    explicit = bool(model_args.get("explicit", model_args.get("explict", False)))
    if start_from_cond:
        chain = "implicit"
    elif explicit:
        chain = "explicit"
    else:
        raise ModelUnavailableError(
            "this official model has neither the semantic prior (start_from_cond) nor the explicit target "
            "(explicit/explict): that variant is not supported; convert an implicit or explicit model"
        )
    return FlowModelConfig(
        feature_dim=backbone.dim,
        backbone=backbone,
        chain=chain,
        concat_semantic=concat or not start_from_cond,
        sigma_min=float(model_args.get("sigma", 0.0)),
        codec=codec,
        official_mode=True,
    )


def convert_official_flow_state(state: Mapping[str, Tensor], depth: int) -> dict[str, Tensor]:
    out = convert_uconformer_state(state, depth, "net.", "cfm.estimator.backbone.")
    for name in ("to_embed.weight", "to_embed.bias", "to_pred.weight"):
        if name not in state:
            raise KeyError(f"official checkpoint lacks {name}")
        out[f"cfm.estimator.{name}"] = state[name]
    extra = [k for k in state if not k.startswith("net.") and k not in ("to_embed.weight", "to_embed.bias", "to_pred.weight")]
    if extra:
        raise KeyError(f"unexpected official parameters: {extra[:5]}")
    return out


def official_flow_from_state(model_args: Mapping, state: Mapping[str, Tensor], codec: str = "snake"):
    """Build our FlowModel from an official config mapping + state dict (strict)."""
    from engine.perceptual.flow_model import FlowModel

    cfg = flow_config_from_official(model_args, codec)
    model = FlowModel(cfg)
    converted = convert_official_flow_state(state, cfg.backbone.depth)
    converted["feature_mean"] = torch.zeros(cfg.feature_dim)
    converted["feature_std"] = torch.ones(cfg.feature_dim)
    model.load_state_dict(converted, strict=True)
    return model.eval()


def load_official_flow(config_path: str | Path, weights_path: str | Path):
    """``model_config.yml`` + ``ConditionalFlowMatcher_best_dev.pt`` -> our FlowModel.
    The authors trained on the Snake SpeechTokenizer (spt_snake_cfg.yaml)."""
    import yaml

    args = yaml.safe_load(Path(config_path).read_text(encoding="utf-8")) or {}
    if "model_args" in args:
        args = args["model_args"]
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    return official_flow_from_state(args, state, codec="snake")
