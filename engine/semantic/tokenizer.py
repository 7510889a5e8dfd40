"""Tokenizers built in code (no download) plus the family's special and unit tokens.

* ``build_tokenizer``: byte-level BPE (our layout: ``tokenizer.json``); the tiny profile and tests.
* ``build_sentencepiece_tokenizer``: a LLaMA-style SentencePiece model written as ``tokenizer.model``
  (the layout of the public LLaMA / AnyGPT checkpoints), loaded back through ``AutoTokenizer``.
* ``build_char_tokenizer``: one token per character (byte fallback), for models trained from scratch.
* ``extend_tokenizer``: adds the family's tokens to any tokenizer (fine-tuning a real LLaMA).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from engine.semantic.prompts import prompt_family

_SAMPLE_TEXT = (
    "the quick brown fox jumps over the lazy dog. hello, how are you today? please read this text out loud. "
    "what time is it? it is noon. good morning, good night. speak this text aloud. transcribe this speech."
)


def build_tokenizer(family: str | None, extra_merges_text: str | None = None):
    """A ``PreTrainedTokenizerFast``: 256 byte tokens (+ BPE merges learnt from ``extra_merges_text``),
    ``<s>``, ``</s>``, ``<unk>``, and (unless ``family`` is None: a plain text tokenizer, as a base
    LLaMA has) the family's special tokens and its 1024 unit tokens. Deterministic."""
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


def build_sentencepiece_tokenizer(folder: str | Path, family: str | None, vocab_size: int = 400, text: str = _SAMPLE_TEXT):
    """A LLaMA-style SentencePiece BPE (byte fallback, dummy prefix) trained on ``text``, written to
    ``folder/tokenizer.model`` + ``tokenizer_config.json`` and loaded back with ``AutoTokenizer``;
    the family's tokens are added (not yet saved: call ``save_pretrained``). Needs ``sentencepiece``."""
    try:
        import sentencepiece as spm
    except ImportError as exc:
        raise ImportError("building a SentencePiece tokenizer needs the sentencepiece package: pip install sentencepiece") from exc
    from transformers import AutoTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    sentences = [s.strip() + "." for s in text.split(".") if s.strip()] * 4
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=buf, vocab_size=vocab_size, model_type="bpe", byte_fallback=True,
        character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, add_dummy_prefix=True, split_digits=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False, allow_whitespace_only_pieces=True,
        num_threads=1, minloglevel=2,
    )
    (folder / "tokenizer.model").write_bytes(buf.getvalue())
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "add_bos_token": True, "add_eos_token": False, "legacy": True,
    }))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if family is not None:
        extend_tokenizer(tokenizer, family)
    return tokenizer


def extend_tokenizer(tokenizer, family: str) -> int:
    """Add the family's special tokens and unit tokens (as AnyGPT does: plain added tokens that
    are never split); returns how many were new."""
    from tokenizers import AddedToken

    fam = prompt_family(family)
    specials = [AddedToken(t, special=False, normalized=False) for t in fam.special_tokens]
    units = [AddedToken(t, special=False, normalized=False) for t in fam.units.all_tokens()]
    return tokenizer.add_tokens(specials + units)


BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]
_ASCII = "".join(chr(c) for c in range(32, 127))


def build_char_tokenizer(family: str, alphabet: str | list[str] = ""):
    """A character-level ``PreTrainedTokenizerFast`` for a model trained from scratch: one token per
    character of ``alphabet`` (plus printable ASCII), byte-fallback tokens ``<0x00>``..``<0xFF>`` for
    any other character (nothing is ever unknown), ``<unk>``, ``<s>``, ``</s>``, and the family's
    special tokens and 1024 unit tokens, each one token (added tokens are matched before the
    characters, so ``<12>`` is one unit, never five characters). Deterministic for an alphabet."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set(_ASCII) | {c for c in "".join(alphabet) if c.isprintable() and len(c) == 1})
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for tok in BYTE_TOKENS + chars:
        vocab.setdefault(tok, len(vocab))
    # BPE without merges = one token per character; byte_fallback writes other characters as UTF-8 bytes
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True))
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>")
    extend_tokenizer(fast, family)
    return fast
