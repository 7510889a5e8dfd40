"""The semantic LLM: load (fp32 CPU, fp16/bf16 CUDA, 4-bit NF4), and a streaming decode loop.

The loop (own, with a KV cache) walks a reply *scaffold* (engine.semantic.prompts): fixed strings
are fed, slots are sampled with temperature / top-p / repetition penalty until their stop token;
inside a speech span only unit tokens and ``<eosp>`` can be sampled. Text comes out as deltas and
units in chunks as soon as they exist, so audio can start before the reply ends. The final reply
is always parsed from the full generated text, so streaming and non-streaming agree.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Iterator, Union

import torch
from torch import Tensor

from engine.errors import ModelUnavailableError
from engine.semantic.config import SamplingConfig, SemanticConfig
from engine.semantic.history import Conversation
from engine.semantic.prompts import PromptFamily, Segment, Slot, Turn, clean_slot_text, prompt_family
from engine.semantic.units import EOSP, SOSP

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ events / results
@dataclass
class ChatReply:
    transcript: str
    text: str
    units: list[int]
    warnings: list[str] = field(default_factory=list)


@dataclass
class TranscriptDelta:
    text: str


@dataclass
class TextDelta:
    text: str


@dataclass
class UnitChunk:
    units: list[int]


@dataclass
class ReplyDone:
    reply: ChatReply


ChatEvent = Union[TranscriptDelta, TextDelta, UnitChunk, ReplyDone]


def parse_reply(family: PromptFamily, text: str) -> ChatReply:
    """Transcript, answer text and units from a raw reply; malformed output gives a defined result
    with warnings, never an exception."""
    warnings: list[str] = []
    if not text.strip():
        return ChatReply("", "", [], ["empty reply"])
    if family.name == "anygpt":
        ins, res = "<-Ins->", "<-Res->"
        head, _, rest = text.partition(res) if res in text else ("", "", text)
        transcript = head.split(ins, 1)[1] if ins in head else head
        body = rest
    else:
        head, sep, body = text.partition("[ta]")
        transcript = head if sep else ""
        body = body if sep else text
    text_part = body.split("[ua]", 1)[0] if "[ua]" in body else body
    text_part = text_part.split(SOSP, 1)[0]
    for end in (family.end_of_turn, EOSP):
        text_part = text_part.split(end, 1)[0]
    speech = family.units.parse(body[body.find(SOSP):] if SOSP in body else body)
    warnings += speech.warnings
    if not speech.units:
        warnings.append("the reply has no speech units")
    reply = ChatReply(clean_slot_text(transcript, None), clean_slot_text(family.units.pattern.sub("", text_part), None), speech.units, warnings)
    if not reply.text and not reply.units:
        reply.warnings.append("empty reply")
    for w in warnings:
        log.warning("semantic reply: %s", w)
    return reply


# ------------------------------------------------------------------------------ sampling
def sample_next(logits: Tensor, history: Tensor, s: SamplingConfig, generator: torch.Generator | None) -> int:
    """One token from logits [V] (float32), with repetition penalty over ``history`` ids."""
    logits = logits.float().clone()
    if s.repetition_penalty != 1.0 and history.numel():
        seen = history.unique()
        vals = logits[seen]
        logits[seen] = torch.where(vals > 0, vals / s.repetition_penalty, vals * s.repetition_penalty)
    if s.temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits / s.temperature, dim=-1)
    if s.top_p < 1.0:
        sorted_p, order = probs.sort(descending=True)
        keep = sorted_p.cumsum(0) - sorted_p < s.top_p
        keep[0] = True
        probs = torch.zeros_like(probs).scatter_(0, order[keep], sorted_p[keep])
    return int(torch.multinomial(probs / probs.sum(), 1, generator=generator))


class SemanticModel:
    """A causal LM that reads/writes text and RVQ-1 units in one prompt family."""

    def __init__(self, model, tokenizer, family: PromptFamily, cfg: SemanticConfig, name: str):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.family = family
        self.cfg = cfg
        self.name = name
        self.device = next(model.parameters()).device
        vocab = tokenizer.get_vocab()
        unit_tokens = family.units.all_tokens()
        missing = [t for t in unit_tokens[:3] + [SOSP, EOSP] if t not in vocab]
        if missing:
            raise ModelUnavailableError(
                f"{name}: the tokenizer has no {family.name} speech tokens (e.g. {missing[0]}); it is not a speech model of this "
                f"family. Set semantic.family, or fine-tune it with `python -m engine train-llm run`"
            )
        self.unit_ids = torch.tensor([vocab[t] for t in unit_tokens])
        self.unit_of = {int(i): u for u, i in enumerate(self.unit_ids)}
        self.num_embeddings = model.get_input_embeddings().weight.shape[0]

    # -------------------------------------------------------------- loading
    @classmethod
    def from_config(cls, cfg: SemanticConfig, device: str | None = None) -> "SemanticModel":
        device = device or cfg.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if cfg.random_init:
            return cls.tiny(cfg, device=device)
        return cls.from_pretrained(cfg.path, cfg, device=device)

    @classmethod
    def tiny(cls, cfg: SemanticConfig | None = None, device: str = "cpu", family: str | None = None) -> "SemanticModel":
        """A tiny random LLaMA + a tokenizer built in code (tests and offline UI work only)."""
        from transformers import LlamaConfig, LlamaForCausalLM

        from engine.semantic.tokenizer import build_tokenizer

        cfg = cfg or SemanticConfig(random_init=True)
        fam = family or cfg.family
        tokenizer = build_tokenizer(fam)
        config = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=4, max_position_embeddings=cfg.max_context_tokens, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = LlamaForCausalLM(config)
        return cls(model.to(device), tokenizer, prompt_family(fam), replace(cfg, family=fam), "tiny (random)")

    @classmethod
    def from_pretrained(cls, path: str, cfg: SemanticConfig, device: str = "cpu") -> "SemanticModel":
        """A hub id or local folder; bf16/fp16 on CUDA, float32 on CPU, or 4-bit NF4."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kwargs: dict = {}
        on_cuda = str(device).startswith("cuda")
        if cfg.quant == "4bit":
            try:
                import bitsandbytes  # noqa: F401
                from transformers import BitsAndBytesConfig
            except ImportError as exc:
                raise ModelUnavailableError("4-bit loading needs bitsandbytes: pip install -e '.[gpu]' (on a CUDA machine)") from exc
            compute = torch.bfloat16 if on_cuda and torch.cuda.is_bf16_supported() else (torch.float16 if on_cuda else torch.float32)
            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute)
            kwargs["device_map"] = {"": device if on_cuda else "cpu"}
        elif cfg.quant != "none":
            raise ModelUnavailableError(f"unknown semantic.quant {cfg.quant!r}; use none or 4bit")
        dtype = cfg.dtype
        if dtype == "auto":
            dtype = ("bfloat16" if torch.cuda.is_bf16_supported() else "float16") if on_cuda else "float32"
        kwargs["dtype"] = getattr(torch, dtype)
        local_only = _offline()
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
            model = AutoModelForCausalLM.from_pretrained(path, local_files_only=local_only, **kwargs)
        except (OSError, ValueError) as exc:
            raise ModelUnavailableError(
                f"could not load the semantic LLM from {path!r} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
                f"It needs config.json, the tokenizer files and the weights; get them with `hf download {path}` on a machine "
                f"with internet access, or set semantic.path to a local folder"
            ) from exc
        except Exception as exc:  # bitsandbytes refusing the device, CUDA errors...
            raise ModelUnavailableError(f"could not load the semantic LLM from {path!r}: {exc}") from exc
        if "device_map" not in kwargs:
            model = model.to(device)
        return cls(model, tokenizer, prompt_family(cfg.family), cfg, str(path))

    # -------------------------------------------------------------- decode loop
    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def count_tokens(self, text: str) -> int:
        return len(self._ids(text))

    def _token_id(self, token: str) -> int:
        ids = self._ids(token)
        if len(ids) != 1:
            raise ValueError(f"{token!r} is not a single token in this tokenizer")
        return ids[0]

    @torch.inference_mode()
    def _generate(self, prompt: str, scaffold: list[Segment], sampling: SamplingConfig) -> Iterator[tuple[str, object]]:
        """Walk ``scaffold`` after ``prompt``; yields ("text", (slot, delta)) and ("unit", id), then
        ("done", full_reply_text)."""
        from transformers import DynamicCache

        gen = torch.Generator().manual_seed(sampling.seed) if sampling.seed is not None else None
        prompt_ids = ([self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []) + self._ids(prompt)
        room = self.cfg.max_context_tokens - len(prompt_ids)
        if room <= 8:
            raise ModelUnavailableError(f"the prompt ({len(prompt_ids)} tokens) fills the context window ({self.cfg.max_context_tokens}); clear the conversation")
        budget = min(sampling.max_new_tokens, room)
        cache = DynamicCache()
        seq: list[int] = list(prompt_ids)
        logits = self._forward(prompt_ids, cache)
        reply_ids: list[int] = []
        allowed_units = torch.zeros(self.num_embeddings, dtype=torch.bool)
        allowed_units[self.unit_ids] = True

        def feed(ids: list[int]) -> Tensor:
            seq.extend(ids)
            reply_ids.extend(ids)
            return self._forward(ids, cache)

        for seg in scaffold:
            if isinstance(seg, str):
                ids = self._ids(seg)
                if ids:
                    logits = feed(ids)
                continue
            stops = {self._token_id(t): t for t in seg.stops}
            mask = torch.zeros(self.num_embeddings, dtype=torch.bool)
            if seg.name == "units":
                mask[:] = True
                mask[allowed_units] = False
                mask[list(stops)] = False
            else:
                mask[allowed_units] = True  # no speech units inside text
            for t in seg.banned:
                mask[self._token_id(t)] = True
            left = budget - len(reply_ids) - 4
            # text slots get their own cap so that the speech after them keeps most of the budget
            limit = left if seg.name == "units" else min(seg.max_tokens or self.cfg.max_text_tokens, left)
            slot_ids: list[int] = []
            shown = ""
            stopped = False
            while len(slot_ids) < max(limit, 0):
                step_logits = logits.float().masked_fill(mask.to(logits.device), float("-inf"))
                token = sample_next(step_logits.cpu(), torch.tensor(seq), sampling, gen)
                logits = feed([token])
                if token in stops:
                    stopped = True
                    break
                slot_ids.append(token)
                if seg.name == "units":
                    yield "unit", self.unit_of[token]
                else:
                    text = self.tokenizer.decode(slot_ids)
                    if not text.endswith("\ufffd") and len(text) > len(shown):
                        yield "text", (seg.name, text[len(shown):])
                        shown = text
            if seg.name != "units":  # flush a character held back as incomplete
                text = self.tokenizer.decode(slot_ids)
                if len(text) > len(shown):
                    yield "text", (seg.name, text[len(shown):])
            if not stopped:  # budget reached: close the slot ourselves so the reply stays well-formed
                log.warning("semantic model: %s slot hit its token budget", seg.name)
                logits = feed([next(iter(stops))])
        yield "done", self.tokenizer.decode(reply_ids)

    def _forward(self, ids: list[int], cache) -> Tensor:
        out = self.model(input_ids=torch.tensor([ids], device=self.device), past_key_values=cache, use_cache=True)
        return out.logits[0, -1]

    # -------------------------------------------------------------- tasks
    def _sampling(self, sampling: SamplingConfig | None) -> SamplingConfig:
        return sampling or self.cfg.sampling

    def stream_speak(self, text: str, sampling: SamplingConfig | None = None, instruction: int = 0) -> Iterator[list[int]]:
        """TTS: RVQ-1 units for ``text``, in chunks of ``unit_chunk``."""
        chunk: list[int] = []
        for kind, value in self._generate(self.family.tts_prompt(text, instruction), self.family.tts_scaffold(), self._sampling(sampling)):
            if kind == "unit":
                chunk.append(value)  # type: ignore[arg-type]
                if len(chunk) >= self.cfg.unit_chunk:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk

    def speak(self, text: str, sampling: SamplingConfig | None = None, instruction: int = 0) -> list[int]:
        return [u for chunk in self.stream_speak(text, sampling, instruction) for u in chunk]

    def transcribe(self, units: list[int], sampling: SamplingConfig | None = None) -> str:
        """ASR: text for RVQ-1 units."""
        full = ""
        for kind, value in self._generate(self.family.asr_prompt(units), self.family.asr_scaffold(), self._sampling(sampling)):
            if kind == "done":
                full = value  # type: ignore[assignment]
        return clean_slot_text(full, self.family.end_of_turn)

    def stream_respond(self, history: Conversation, user: str | list[int], sampling: SamplingConfig | None = None) -> Iterator[ChatEvent]:
        """Chat: transcript deltas (spoken input), reply text deltas, unit chunks, then ReplyDone.
        The turn is appended to ``history``."""
        sampling = self._sampling(sampling)
        spoken = not isinstance(user, str)
        message = self.family.user_message(None if spoken else user, list(user) if spoken else None)
        reserve = sampling.max_new_tokens + self.count_tokens(message) + 64
        past = history.render(self.family, self.count_tokens, max(self.cfg.max_context_tokens - reserve, 0))
        prompt = self.family.chat_prompt(past, message)
        scaffold = self.family.chat_scaffold(spoken, None if spoken else user)  # type: ignore[arg-type]
        chunk: list[int] = []
        full = ""
        for kind, value in self._generate(prompt, scaffold, sampling):
            if kind == "text":
                slot, delta = value  # type: ignore[misc]
                yield TranscriptDelta(delta) if slot == "transcript" else TextDelta(delta)
            elif kind == "unit":
                chunk.append(value)  # type: ignore[arg-type]
                if len(chunk) >= self.cfg.unit_chunk:
                    yield UnitChunk(chunk)
                    chunk = []
            else:
                full = value  # type: ignore[assignment]
        if chunk:
            yield UnitChunk(chunk)
        reply = parse_reply(self.family, full)
        if not spoken:
            reply.transcript = str(user)
        history.append(Turn(user_text=None if spoken else str(user), user_units=list(user) if spoken else None,
                            transcript=reply.transcript, reply_text=reply.text, reply_units=reply.units))
        yield ReplyDone(reply)

    def respond(self, history: Conversation, user: str | list[int], sampling: SamplingConfig | None = None) -> ChatReply:
        reply = None
        for event in self.stream_respond(history, user, sampling):
            if isinstance(event, ReplyDone):
                reply = event.reply
        assert reply is not None
        return reply


def _offline() -> bool:
    import os

    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
