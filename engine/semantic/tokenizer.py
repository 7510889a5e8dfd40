"""Tokenizers built in code: byte-level BPE (no download) plus the family's special and unit tokens.

Used by the tiny profile and the tests; ``extend_tokenizer`` also adds unit tokens to a real LLaMA
tokenizer for fine-tuning.
"""

from __future__ import annotations

from engine.semantic.prompts import prompt_family


def build_tokenizer(family: str | None, extra_merges_text: str | None = None):
    """A ``PreTrainedTokenizerFast``: 256 byte tokens (+ BPE merges learnt from ``extra_merges_text``),
    ``<s>``, ``</s>``, ``<unk>``, and (unless ``family`` is None: a plain text tokenizer, as a base
    LLaMA has) the family's special tokens and its 1024 unit tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=256 + (200 if extra_merges_text else 0), initial_alphabet=alphabet, show_progress=False, special_tokens=["<unk>", "<s>", "</s>"])
    tok.train_from_iterator([extra_merges_text or " ".join(alphabet)], trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    if family is not None:
        extend_tokenizer(fast, family)
    return fast


def extend_tokenizer(tokenizer, family: str) -> int:
    """Add the family's special tokens and unit tokens; returns how many were new."""
    from tokenizers import AddedToken

    fam = prompt_family(family)
    specials = [AddedToken(t, special=False, normalized=False) for t in fam.special_tokens]
    units = [AddedToken(t, special=False, normalized=False) for t in fam.units.all_tokens()]
    return tokenizer.add_tokens(specials + units)
