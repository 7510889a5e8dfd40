"""Token ids as transformers 4.34.1's slow ``LlamaTokenizer`` produces them (AnyGPT's stack).

AnyGPT pins ``transformers==4.34.1`` and loads its checkpoints with the slow SentencePiece
``LlamaTokenizer``; its template markers and unit tokens are plain added tokens. Newer
transformers split the text around added tokens differently (one ``▁`` more or fewer next to
``<eoh>``, ``[MMGPT]``, ``<sosp>``...), so the checkpoint would read ids it never saw in training.
This module re-implements that version's encoding rules (written from its documented behaviour,
verified id for id on ``tests/fixtures/anygpt_tokenizer``):

1. the text is split on every added token (leftmost, longest match; special tokens included);
   added tokens with ``lstrip``/``rstrip`` eat the spaces beside them;
2. every other piece goes through SentencePiece on its own:
   * ``legacy`` (the value in ``tokenizer_config.json``; absent means legacy): plain
     ``encode`` with the model's own options (dummy prefix on, so each piece starts with ``▁``);
   * non-legacy: the model is loaded with the dummy prefix off; the whole text gets one leading
     ``▁`` (dropped again when a special token follows it), and a piece that starts with a space
     is encoded behind ``<unk>`` whose pieces are then removed, so its leading space survives.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

SPIECE_UNDERLINE = "\u2581"


@dataclass(frozen=True)
class _Added:
    content: str
    lstrip: bool = False
    rstrip: bool = False


class SlowLlamaEncoder:
    """Encoder of one SentencePiece LLaMA tokenizer folder, id-exact with transformers 4.34.1."""

    def __init__(self, model_file: str | Path, config: dict, added_tokens: dict[str, int] | None = None):
        """``model_file``: ``tokenizer.model``; ``config``: the parsed ``tokenizer_config.json``;
        ``added_tokens``: ``added_tokens.json`` (used when the config has no ``added_tokens_decoder``)."""
        import sentencepiece as spm

        self.legacy = config.get("legacy") is None or bool(config["legacy"])  # absent: 4.34.1's default, legacy
        self.unk_token = _content(config.get("unk_token", "<unk>"))
        proto = Path(model_file).read_bytes()
        self.sp = spm.SentencePieceProcessor()
        if self.legacy:
            self.sp.LoadFromSerializedProto(proto)
        else:
            from sentencepiece import sentencepiece_model_pb2 as pb

            model = pb.ModelProto.FromString(proto)
            model.normalizer_spec.add_dummy_prefix = False
            self.sp.LoadFromSerializedProto(model.SerializeToString())
        self.added: dict[str, tuple[int, _Added]] = {}
        for key, entry in (config.get("added_tokens_decoder") or {}).items():
            self.added[entry["content"]] = (int(key), _Added(entry["content"], bool(entry.get("lstrip")), bool(entry.get("rstrip"))))
        for content, index in (added_tokens or {}).items():
            self.added.setdefault(content, (int(index), _Added(content)))
        self.special = {_content(config.get(k)) for k in ("bos_token", "eos_token", "unk_token", "pad_token") if config.get(k)}
        for t in self.special:  # special tokens are never split, as in the slow tokenizer
            self.added.setdefault(t, (self.sp.piece_to_id(t), _Added(t)))
        self._added_by_id = {i: t for t, (i, _) in self.added.items() if t not in self.special}
        names = sorted(self.added, key=len, reverse=True)
        self._split = re.compile("(" + "|".join(re.escape(n) for n in names) + ")") if names else None
        self._unk_len = len(self.sp.encode(self.unk_token, out_type=str))

    @classmethod
    def from_folder(cls, folder: str | Path) -> "SlowLlamaEncoder":
        """Read ``tokenizer.model``, ``tokenizer_config.json`` and ``added_tokens.json`` of a folder."""
        folder = Path(folder)
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        added = folder / "added_tokens.json"
        return cls(folder / "tokenizer.model", config, json.loads(added.read_text(encoding="utf-8")) if added.exists() else None)

    # ------------------------------------------------------------------ encoding
    def tokens(self, text: str) -> list[str]:
        """Token strings of ``text`` (no BOS)."""
        if self.legacy or not text:
            return self._tokenize(text)
        tokens = self._tokenize(SPIECE_UNDERLINE + text.replace(SPIECE_UNDERLINE, " "))
        if len(tokens) > 1 and tokens[0] == SPIECE_UNDERLINE and tokens[1] in self.special:
            tokens = tokens[1:]
        return tokens

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no BOS), as 4.34.1's ``tokenizer(text, add_special_tokens=False)``."""
        return [self.added[t][0] if t in self.added else self.sp.piece_to_id(t) for t in self.tokens(text)]

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids`` read as the continuation of an added token (what a reply slot is), so that
        ``decode(encode(anchor + text)[len(encode(anchor)):]) == text``: every ``▁`` is a space,
        except, in legacy mode, the one SentencePiece's dummy prefix put at the start."""
        out = bytearray()
        for i in ids:
            piece = self._added_by_id.get(i)
            if piece is None:
                if self.sp.is_byte(i):
                    out.append(int(self.sp.id_to_piece(i)[3:5], 16))
                    continue
                if self.sp.is_control(i):
                    continue
                piece = self.sp.id_to_piece(i).replace(SPIECE_UNDERLINE, " ")
            out.extend(piece.encode("utf-8"))
        text = out.decode("utf-8", errors="replace")
        return text[1:] if self.legacy and text.startswith(" ") else text

    def _tokenize(self, text: str) -> list[str]:
        parts = self._split.split(text) if self._split else [text]
        for i, part in enumerate(parts):
            if i % 2 == 1:  # an added token (re.split puts the captured matches at odd positions)
                spec = self.added[part][1]
                if spec.rstrip and i + 1 < len(parts):
                    parts[i + 1] = parts[i + 1].lstrip()
                if spec.lstrip and i > 0:
                    parts[i - 1] = parts[i - 1].rstrip()
        out: list[str] = []
        for i, part in enumerate(parts):
            if not part:
                continue
            out.extend([part] if i % 2 == 1 else self._sp_piece(part))
        return out

    def _sp_piece(self, text: str) -> list[str]:
        tokens = self.sp.encode(text, out_type=str)
        if self.legacy or not text.startswith((SPIECE_UNDERLINE, " ")):
            return tokens
        tokens = self.sp.encode(self.unk_token + text, out_type=str)
        return tokens[self._unk_len:] if len(tokens) >= self._unk_len else tokens


def _content(value) -> str:
    return value["content"] if isinstance(value, dict) else str(value)


def slow_llama_encoder_for(path: str, local_only: bool, mode: str = "auto") -> SlowLlamaEncoder | None:
    """The 4.34.1-exact encoder of a checkpoint (hub id or folder), or None to use the checkpoint's
    tokenizer as today's transformers loads it. ``mode``: ``native`` (always None), ``anygpt``
    (required: an error when the checkpoint has no SentencePiece ``LlamaTokenizer``), ``auto``: the
    encoder when the folder is a slow SentencePiece ``LlamaTokenizer`` save with no
    ``tokenizer.json`` (the layout AnyGPT's checkpoints have; a checkpoint saved by transformers 5,
    e.g. our fine-tunes, has a ``tokenizer.json`` and was trained on that tokenizer's ids)."""
    if mode not in ("auto", "anygpt", "native"):
        raise ValueError(f"unknown semantic.tokenizer_ids {mode!r}; use auto, anygpt or native")
    if mode == "native":
        return None
    from transformers.utils import cached_file

    def fetch(name: str) -> str | None:
        try:
            return cached_file(path, name, local_files_only=local_only, _raise_exceptions_for_missing_entries=False)
        except OSError:
            return None

    model_file, config_file = fetch("tokenizer.model"), fetch("tokenizer_config.json")
    config = json.loads(Path(config_file).read_text(encoding="utf-8")) if config_file else {}
    slow_llama = model_file is not None and str(config.get("tokenizer_class", "")).replace("Fast", "") == "LlamaTokenizer"
    if mode == "anygpt" and not slow_llama:
        raise ValueError(f"{path}: semantic.tokenizer_ids is anygpt but the checkpoint has no SentencePiece LlamaTokenizer "
                         f"(tokenizer.model + tokenizer_config.json); set semantic.tokenizer_ids: auto")
    if not slow_llama or (mode == "auto" and fetch("tokenizer.json") is not None):
        return None
    added_file = fetch("added_tokens.json")
    added = json.loads(Path(added_file).read_text(encoding="utf-8")) if added_file else None
    return SlowLlamaEncoder(model_file, config, added)
