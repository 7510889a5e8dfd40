"""Tiny semantic LLM checkpoints written in the two on-disk layouts the loader must read.

* ours: ``tokenizer.json`` (byte-level BPE built in code) + ``model.safetensors``;
* AnyGPT's (a LLaMA checkpoint): SentencePiece ``tokenizer.model`` + ``added_tokens.json`` +
  ``tokenizer_config.json`` + ``pytorch_model.bin``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from engine.semantic.config import SemanticConfig
from engine.semantic.prompts import prompt_family


def tiny_llama(vocab_size: int, seed: int = 0, bos: int = 1, eos: int = 2):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=4, max_position_embeddings=4096, bos_token_id=bos, eos_token_id=eos, tie_word_embeddings=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


def save_ours(folder: Path, family: str, seed: int = 0) -> Path:
    """Our layout, from ``SemanticModel.tiny``."""
    from engine.semantic.model import SemanticModel

    model = SemanticModel.tiny(SemanticConfig(random_init=True, family=family, seed=seed))
    model.model.save_pretrained(folder)
    model.tokenizer.save_pretrained(folder)
    assert (folder / "tokenizer.json").is_file() and (folder / "model.safetensors").is_file()
    return folder


def save_anygpt_layout(folder: Path, family: str = "anygpt", seed: int = 0) -> Path:
    """A LLaMA-style checkpoint as the public AnyGPT repos ship it (SentencePiece model, added tokens
    in ``added_tokens.json``, PyTorch-pickle weights)."""
    from engine.semantic.tokenizer import build_sentencepiece_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    base = build_sentencepiece_tokenizer(folder, None)
    n = len(base)
    fam = prompt_family(family)
    added = {t: n + i for i, t in enumerate(list(fam.special_tokens) + fam.units.all_tokens())}
    (folder / "added_tokens.json").write_text(json.dumps(added, ensure_ascii=False))
    (folder / "special_tokens_map.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}))
    model = tiny_llama(n + len(added), seed=seed)
    model.config.save_pretrained(folder)  # transformers 5 only writes safetensors: write the old pickle format by hand
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    assert (folder / "tokenizer.model").is_file() and (folder / "pytorch_model.bin").is_file()
    assert not (folder / "tokenizer.json").exists()
    return folder


def slot_plan(dec, vocab: int, allowed: list[int], stops: list[int]):
    """A decoder's plan for a slot that may sample ``allowed`` ids and ends at ``stops`` (named <stopN>)."""
    mask = torch.ones(vocab, dtype=torch.bool)
    mask[allowed + stops] = False
    return dec.plan({s: f"<stop{s}>" for s in stops}, mask, None)
