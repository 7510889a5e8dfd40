"""LLaMA-architecture semantic models of named sizes, created from scratch (no pretrained weights).

``python -m engine train-llm run --model scratch:SIZE`` trains one of these on instruction data
built from the demo codes; the result is an ordinary transformers LLaMA folder that
``SemanticModel.from_pretrained`` loads (``semantic.path``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScratchSize:
    """Shape of a from-scratch LLaMA (the vocabulary comes from its tokenizer)."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    kv_heads: int | None = None  # None: as many as heads (no grouped-query attention)


SIZES: dict[str, ScratchSize] = {
    "tiny": ScratchSize(hidden=64, layers=2, heads=4, intermediate=128),  # tests: ~0.3 M parameters
    "small": ScratchSize(hidden=256, layers=6, heads=4, intermediate=768),  # ~5.5 M
    "demo": ScratchSize(hidden=384, layers=8, heads=6, intermediate=1024),  # ~15 M with the demo vocabulary
    "base": ScratchSize(hidden=512, layers=12, heads=8, intermediate=1536),  # ~42 M (GPU)
}


def scratch_size(name: str) -> ScratchSize:
    """The named size; a clear error lists the others."""
    if name not in SIZES:
        raise ValueError(f"unknown scratch model size {name!r}; use one of {', '.join(SIZES)}")
    return SIZES[name]


def build_scratch_model(size: str, tokenizer, max_positions: int = 2048, seed: int = 0, **config_fields):
    """A randomly initialised ``LlamaForCausalLM`` of ``size`` for ``tokenizer`` (untied input and
    output embeddings). ``config_fields`` are recorded in its ``config.json`` (e.g. ``text_units``,
    read back by ``TextFrontEnd.from_model_config``)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    s = scratch_size(size)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=s.hidden, intermediate_size=s.intermediate, num_hidden_layers=s.layers,
        num_attention_heads=s.heads, num_key_value_heads=s.kv_heads or s.heads, max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    for key, value in config_fields.items():
        setattr(config, key, value)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model


def count_parameters(model) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
