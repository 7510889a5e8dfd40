"""Tokenizers built in code (no download) plus the family's special and unit tokens.

* ``build_tokenizer``: byte-level BPE (our layout: ``tokenizer.json``); the tiny profile and tests.
* ``build_sentencepiece_tokenizer``: a LLaMA-style SentencePiece model written as ``tokenizer.model``
  (the layout of the public LLaMA / AnyGPT checkpoints), loaded back through ``AutoTokenizer``.
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
