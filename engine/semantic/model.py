"""The semantic LLM: load (fp32 CPU, fp16/bf16 CUDA, 4-bit NF4), and a streaming decode loop.

The loop walks a reply *scaffold* (engine.semantic.prompts) with a decoder (engine.semantic.decoding:
a static KV cache with on-device sampling for LLaMA models, else the eager transformers loop): fixed
strings are fed, slots are sampled with temperature / top-p / repetition penalty until their stop token;
inside a speech span only unit tokens and ``<eosp>`` can be sampled. Text comes out as deltas and
units in chunks as soon as they exist, so audio can start before the reply ends. The final reply
is always parsed from the full generated text, so streaming and non-streaming agree.
"""

from __future__ import annotations

import logging
import math
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Union

import torch
from torch import Tensor

from engine.errors import ModelUnavailableError
from engine.semantic.batch_decoding import sample_rows
from engine.semantic.config import SamplingConfig, SemanticConfig
from engine.semantic.decoding import DecoderSlot, EagerDecoder, StaticDecoder, sample_next
from engine.semantic.frontend import TextFrontEnd
from engine.semantic.history import Conversation
from engine.semantic.parsing import ChatReply, parse_reply, parse_text
from engine.semantic.prompts import PromptFamily, Segment, Slot, Turn, displayable, prompt_family
from engine.semantic.selection import PhonemeSelector
from engine.semantic.slow_llama import SlowLlamaEncoder, slow_llama_encoder_for
from engine.semantic.units import EOSP, SOSP

__all__ = ["SemanticModel", "ChatReply", "ChatEvent", "TranscriptDelta", "TextDelta", "UnitChunk", "ReplyDone", "parse_reply", "sample_next"]

log = logging.getLogger(__name__)

CANDIDATE_PATIENCE = 1.5  # speak_candidates: see engine.semantic.batch_decoding.sample_rows


# ------------------------------------------------------------------------------ events
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


class SemanticModel:
    """A causal LM that reads/writes text and RVQ-1 units in one prompt family."""

    def __init__(self, model, tokenizer, family: PromptFamily, cfg: SemanticConfig, name: str, encoder: SlowLlamaEncoder | None = None):
        """``encoder``: the 4.34.1-exact encoder of a SentencePiece LLaMA checkpoint (AnyGPT's
        stack); without it text is encoded by ``tokenizer`` itself."""
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.encoder = encoder
        self.family = family
        self.cfg = cfg
        self.name = name
        self.device = next(model.parameters()).device
        # how TTS input text is written (characters or phonemes) when the model's config.json records it
        # (models trained here with `train-llm run --model scratch:SIZE`); other models read the text as given
        self.frontend = TextFrontEnd.from_model_config(getattr(model, "config", None), default=None)
        self.vocab = tokenizer.get_vocab()
        if encoder is not None:  # the ids the checkpoint was trained with win over a newer tokenizer's
            self.vocab.update({t: i for t, (i, _) in encoder.added.items()})
        unit_tokens = family.units.all_tokens()
        missing = [t for t in unit_tokens[:3] + list(family.special_tokens) if t not in self.vocab]
        if missing:
            raise ModelUnavailableError(
                f"{name}: the tokenizer has no {family.name} speech tokens (e.g. {missing[0]}); it is not a speech model of this "
                f"family. Set semantic.family, or fine-tune it with `python -m engine train-llm run`"
            )
        self.unit_ids = torch.tensor([self.vocab[t] for t in unit_tokens])
        self.unit_of = {int(i): u for u, i in enumerate(self.unit_ids)}
        self._units_of_tokens: Tensor | None = None  # _token_units, built on first use
        self.num_embeddings = model.get_input_embeddings().weight.shape[0]
        # picks one of semantic.tts_candidates sampled unit sequences (engine.semantic.selection; the engine
        # attaches the codec's phoneme-head selector). None: TTS samples one sequence
        self.selector: PhonemeSelector | None = None
        c = self.cfg
        self._slot = DecoderSlot(model, c.decoder, c.compile, c.sync_every, c.fuse, c.half_matmul, c.max_context_tokens)
        if int(self.unit_ids.max()) >= self.num_embeddings:
            raise ModelUnavailableError(f"{name}: the tokenizer has {len(tokenizer)} tokens but the model only {self.num_embeddings} embeddings")

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
                raise ModelUnavailableError("4-bit loading needs the bitsandbytes package: pip install bitsandbytes, or set semantic.quant: none") from exc
            compute = torch.bfloat16 if on_cuda and torch.cuda.is_bf16_supported() else (torch.float16 if on_cuda else torch.float32)
            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute)
            kwargs["device_map"] = {"": device if on_cuda else "cpu"}
        elif cfg.quant != "none":
            raise ModelUnavailableError(f"unknown semantic.quant {cfg.quant!r}; use none or 4bit")
        dtype = cfg.dtype
        if dtype == "auto":
            dtype = ("bfloat16" if torch.cuda.is_bf16_supported() else "float16") if on_cuda else "float32"
        kwargs["dtype"] = getattr(torch, dtype)
        local_only = Path(str(path)).expanduser().exists() or _offline()  # a local folder never needs the hub
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
            encoder = slow_llama_encoder_for(str(path), local_only, cfg.tokenizer_ids)  # AnyGPT's ids: transformers 4.34.1's slow LlamaTokenizer
            model = AutoModelForCausalLM.from_pretrained(path, local_files_only=local_only, **kwargs)
        except ImportError as exc:  # e.g. a SentencePiece tokenizer.model without the sentencepiece package
            raise ModelUnavailableError(f"could not load the semantic LLM from {path!r}: {exc}. Install the missing package (pip install sentencepiece)") from exc
        except (OSError, ValueError) as exc:
            first = (str(exc).splitlines() or [""])[0][:200]
            raise ModelUnavailableError(
                f"could not load the semantic LLM from {path!r} ({type(exc).__name__}: {first}). "
                f"It needs config.json, the tokenizer (tokenizer.model or tokenizer.json, tokenizer_config.json) and the weights "
                f"(*.safetensors or pytorch_model*.bin); get them with `hf download {path}` (huggingface-cli download) on a machine "
                f"with internet access and copy the cache, or set semantic.path to a local folder"
            ) from exc
        except Exception as exc:  # bitsandbytes refusing the device, CUDA errors...
            hint = " (4-bit: this bitsandbytes build may need a CUDA GPU; set semantic.quant: none)" if cfg.quant == "4bit" else ""
            raise ModelUnavailableError(f"could not load the semantic LLM from {path!r}: {exc}{hint}") from exc
        if "device_map" not in kwargs:
            model = model.to(device)
        return cls(model, tokenizer, prompt_family(cfg.family), cfg, str(path), encoder=encoder)

    # -------------------------------------------------------------- decode loop
    def _ids(self, text: str) -> list[int]:
        if self.encoder is not None:
            return self.encoder.encode(text)
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def _decode(self, ids: list[int]) -> str:
        return self.encoder.decode(ids) if self.encoder is not None else self.tokenizer.decode(ids)

    def count_tokens(self, text: str) -> int:
        return len(self._ids(text))

    def _continuation(self, anchor: str, text: str) -> list[int]:
        """Token ids of ``text`` as the tokenizer splits it right after the added token ``anchor``
        (what tokenizing the whole reply at once gives; SentencePiece would otherwise add a ``▁``)."""
        a = self._ids(anchor)
        full = self._ids(anchor + text)
        return full[len(a):] if full[: len(a)] == a else self._ids(text)

    def _masks(self, seg: Slot) -> tuple[dict[int, str], Tensor]:
        """Stop token ids of a slot, and the mask [V] of tokens it may never sample."""
        stops = {self.vocab[t]: t for t in seg.stops}
        mask = torch.zeros(self.num_embeddings, dtype=torch.bool)
        if seg.name == "units":  # inside a speech span: unit tokens and the stop only
            mask[:] = True
            mask[self.unit_ids] = False
            mask[list(stops)] = False
        else:  # no speech units inside text, and no template markers ([Human], <eoh>...) but the slot's own stops
            mask[self.unit_ids] = True
            for t in self.family.special_tokens:
                if t not in seg.stops and t in self.vocab:
                    mask[self.vocab[t]] = True
        for t in seg.banned:
            if t in self.vocab:
                mask[self.vocab[t]] = True
        if self.tokenizer.bos_token_id is not None and seg.name != "units":
            mask[self.tokenizer.bos_token_id] = True
        return stops, mask.to(self.device)

    @property
    def _static(self) -> StaticDecoder | None:
        """The static decoder, once built (None before the first reply, or for an architecture it cannot run)."""
        return self._slot.static

    def _decoder(self, sampling: SamplingConfig, positions: int, lent: ExitStack) -> EagerDecoder | StaticDecoder:
        """The decoder for one reply of at most ``positions`` tokens (prompt included). The static
        decoder is lent to one reply at a time (given back when ``lent`` closes)."""
        return lent.enter_context(self._slot.lend(sampling, self.tokenizer.eos_token_id, self.num_embeddings, positions))

    def _generate(self, prompt: str, scaffold: list[Segment], sampling: SamplingConfig) -> Iterator[tuple[str, object]]:
        """Walk ``scaffold`` after ``prompt``; yields ("text", (slot, delta)) and ("unit", id) as they
        are sampled, ("warning", message) when a slot is cut at its budget, then ("done", raw reply text)."""
        with ExitStack() as lent:  # closed also when the consumer stops early
            yield from self._walk(prompt, scaffold, sampling, lent)

    def _prefill_ids(self, prompt: str, scaffold: list[Segment], sampling: SamplingConfig) -> tuple[list[int], str, int, int]:
        """(token ids to prefill, the scaffold's fixed text before its first slot, that slot's index, reply token
        budget): the prompt and the fixed text right after it are tokenized as one string, as in training."""
        first_slot = next((i for i, seg in enumerate(scaffold) if isinstance(seg, Slot)), len(scaffold))
        head = "".join(scaffold[:first_slot])  # type: ignore[arg-type]
        bos = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
        seq: list[int] = bos + self._ids(prompt + head)
        room = self.cfg.max_context_tokens - len(seq)
        if room <= 8:
            raise ModelUnavailableError(f"the prompt ({len(seq)} tokens) fills the context window ({self.cfg.max_context_tokens}); clear the conversation or shorten the input")
        return seq, head, first_slot, min(sampling.max_new_tokens, room)

    @torch.inference_mode()
    def _walk(self, prompt: str, scaffold: list[Segment], sampling: SamplingConfig, lent: ExitStack) -> Iterator[tuple[str, object]]:
        seq, head, first_slot, budget = self._prefill_ids(prompt, scaffold, sampling)
        used = 0  # reply tokens so far
        raw = [head]
        decoder = self._decoder(sampling, len(seq) + budget + 1, lent)
        decoder.start(seq)
        anchor = ""
        pending = ""
        for index, seg in enumerate(scaffold[first_slot:], start=first_slot):
            if isinstance(seg, str):
                pending += seg
                raw.append(seg)
                continue
            if pending:  # fixed text between two slots, fed right after the previous stop token
                ids = self._continuation(anchor, pending)
                seq.extend(ids)
                used += len(ids)
                decoder.feed(ids)
                pending = ""
            stops, mask = self._masks(seg)
            # the model's own end-of-text closes a text slot as its stop would
            plan = decoder.plan(stops, mask, None if seg.name == "units" else self.vocab[seg.stops[0]])
            left = budget - used - 4
            # text slots get their own cap so that the speech after them keeps most of the budget
            limit = left if seg.name == "units" else min(seg.max_tokens or self.cfg.max_text_tokens, left)
            slot_ids: list[int] = []
            shown = ""
            stop_token = None
            for token in decoder.sample(plan, max(limit, 0)):  # each token is fed as it is sampled
                seq.append(token)
                used += 1
                if token in stops:
                    stop_token = stops[token]
                    break
                slot_ids.append(token)
                if seg.name == "units":
                    yield "unit", self.unit_of[token]
                else:
                    text = self._decode(slot_ids)
                    if not text.endswith("\ufffd") and len(text) > len(shown):  # wait for an incomplete character
                        yield "text", (seg.name, displayable(text[len(shown):]))
                        shown = text
            body = self._decode(slot_ids)
            if seg.name != "units" and len(body) > len(shown):  # flush a character held back as incomplete
                yield "text", (seg.name, displayable(body[len(shown):]))
            if stop_token is None:  # budget reached: close the slot ourselves so the reply stays well-formed
                log.warning("semantic model: the %s slot hit its token budget", seg.name)
                what = {"units": "spoken reply", "text": "reply text", "transcript": "transcript"}.get(seg.name, seg.name)
                knob = "semantic.sampling.max_new_tokens" if seg.name == "units" else "semantic.max_text_tokens"
                yield "warning", f"the {what} was cut off at its length limit (token budget; raise {knob} for longer replies)"
                stop_token = seg.stops[0]
                if any(isinstance(s, Slot) for s in scaffold[index + 1:]):
                    seq.append(self.vocab[stop_token])
                    used += 1
                    decoder.feed([self.vocab[stop_token]])
            raw.append(body + stop_token)
            anchor = stop_token
        yield "done", "".join(raw)

    # -------------------------------------------------------------- tasks
    def _sampling(self, sampling: SamplingConfig | None) -> SamplingConfig:
        return sampling or self.cfg.sampling

    def _tts_request(self, text: str, sampling: SamplingConfig | None, instruction: int) -> tuple[str, SamplingConfig]:
        """The TTS prompt for ``text`` and its sampling settings, capped by the text's length."""
        prompt = self.family.tts_prompt(self.frontend(text) if self.frontend else text, instruction)  # phonemes when trained on them
        sampling = self._sampling(sampling)
        if self.cfg.tts_units_per_char > 0:  # a length cap from the text: a loop cannot run to the whole budget
            cap = self.cfg.tts_units_base + math.ceil(self.cfg.tts_units_per_char * len(text))
            sampling = replace(sampling, max_new_tokens=min(sampling.max_new_tokens, cap))
        return prompt, sampling

    def stream_speak(self, text: str, sampling: SamplingConfig | None = None, instruction: int = 0,
                     candidates: int | None = None) -> Iterator[list[int]]:
        """TTS: RVQ-1 units for ``text``, in chunks of ``unit_chunk`` as they are sampled. With a
        ``selector`` and ``candidates`` (None: ``candidates_for(text)``) > 1, that many sequences are
        sampled and the one the selector picks comes out (in chunks, once it is chosen)."""
        n = self.candidates_for(text) if candidates is None else int(candidates)
        if self.selector is not None and n > 1:
            samples = self.speak_candidates(text, sampling, n, instruction)
            units = samples[self.selector.best(text, samples)]
            for i in range(0, len(units), self.cfg.unit_chunk):
                yield units[i : i + self.cfg.unit_chunk]
            return
        yield from self._speak_one(text, sampling, instruction)

    def candidates_for(self, text: str, most: int | None = None) -> int:
        """How many unit sequences TTS samples for ``text``: ``most`` (None: ``tts_candidates``), fewer
        for a long text (see ``SemanticConfig.tts_candidates_chars``)."""
        c = self.cfg
        n = max(int(c.tts_candidates if most is None else most), 1)
        if c.tts_candidates_chars > 0 and len(text) > c.tts_candidates_chars:
            n = min(n, max(c.tts_candidates_min, n * c.tts_candidates_chars // len(text)))
        return n

    def _speak_one(self, text: str, sampling: SamplingConfig | None, instruction: int) -> Iterator[list[int]]:
        """One sampled unit sequence for ``text``, in chunks as it is sampled."""
        chunk: list[int] = []
        prompt, sampling = self._tts_request(text, sampling, instruction)
        for kind, value in self._generate(prompt, self.family.tts_scaffold(), sampling):
            if kind == "unit":
                chunk.append(value)  # type: ignore[arg-type]
                if len(chunk) >= self.cfg.unit_chunk:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk

    @torch.inference_mode()
    def speak_candidates(self, text: str, sampling: SamplingConfig | None = None, n: int = 2, instruction: int = 0) -> list[list[int]]:
        """TTS: ``n`` independently sampled unit sequences for ``text``, in one batch after one prefill
        where the static decoder runs the model (engine.semantic.batch_decoding; only the sequences that
        ended, when a row runs on far past the others), else one after another (seeds ``seed``, ``seed + 1``, ...)."""
        prompt, sampling = self._tts_request(text, sampling, instruction)
        scaffold = self.family.tts_scaffold()
        seq, _, first_slot, budget = self._prefill_ids(prompt, scaffold, sampling)
        slot = scaffold[first_slot]
        assert isinstance(slot, Slot) and slot.name == "units"
        with ExitStack() as lent:
            decoder = self._decoder(sampling, len(seq) + budget + 1, lent)
            if isinstance(decoder, StaticDecoder):
                decoder.start(seq)
                stops, mask = self._masks(slot)
                # the limit _walk gives the slot; a row still going at 1.5x the length at which half had ended is cut
                guide = None
                if self.selector is not None and self.cfg.tts_steer_every > 0 and n > 1:
                    guide = self.selector.steering(text, self._token_units(), n, self.cfg.tts_steer_every, self.cfg.tts_steer_sharpness)
                rows = sample_rows(decoder, decoder.plan(stops, mask, None), budget - 4, n, patience=CANDIDATE_PATIENCE, guide=guide)
                ended = [tokens for tokens, stopped in rows if stopped]
                if len(ended) < len(rows):
                    log.info("semantic model: %d of %d speech candidates did not end (cut; loops or runaway speech)", len(rows) - len(ended), len(rows))
                return [[self.unit_of[t] for t in tokens] for tokens in (ended or [tokens for tokens, _ in rows])]
        seeds = [None if sampling.seed is None else sampling.seed + k for k in range(n)]
        return [[u for chunk in self._speak_one(text, replace(sampling, seed=s), instruction) for u in chunk] for s in seeds]

    def _token_units(self) -> Tensor:
        """For every token id of the language model its RVQ-1 unit, or -1 [V] (on the model's device)."""
        if self._units_of_tokens is None:
            table = torch.full((int(self.unit_ids.max()) + 1,), -1, dtype=torch.long)
            table[self.unit_ids] = torch.arange(len(self.unit_ids))
            self._units_of_tokens = table.to(self.device)
        return self._units_of_tokens

    def speak(self, text: str, sampling: SamplingConfig | None = None, instruction: int = 0, candidates: int | None = None) -> list[int]:
        """TTS: RVQ-1 units (50 Hz) for ``text`` (``candidates`` as for ``stream_speak``)."""
        return [u for chunk in self.stream_speak(text, sampling, instruction, candidates) for u in chunk]

    def transcribe(self, units: list[int], sampling: SamplingConfig | None = None, instruction: int = 0) -> str:
        """ASR: text for RVQ-1 units (empty string, with a logged warning, when the model says nothing).
        Without ``sampling``, the text-output settings (``cfg.text_sampling``) are used."""
        raw = ""
        sampling = sampling or self.cfg.text_sampling
        for kind, value in self._generate(self.family.asr_prompt(list(units), instruction), self.family.asr_scaffold(), sampling):
            if kind == "done":
                raw = value  # type: ignore[assignment]
        return parse_text(self.family, raw)[0]

    def stream_respond(self, history: Conversation, user: str | list[int], sampling: SamplingConfig | None = None) -> Iterator[ChatEvent]:
        """Chat: transcript deltas (spoken input), reply text deltas, unit chunks, then ReplyDone.
        The finished turn is appended to ``history``."""
        sampling = self._sampling(sampling)
        spoken = not isinstance(user, str)
        units = [int(u) for u in user] if spoken else None  # type: ignore[union-attr]
        typed = None if spoken else str(user)
        message = self.family.user_message(typed, units)
        window = min(self.cfg.max_context_tokens, history.max_tokens or self.cfg.max_context_tokens)
        prompt_alone = self.family.chat_prompt([], message)
        reserve = sampling.max_new_tokens + self.count_tokens(prompt_alone) + 8
        past = history.render(self.family, self.count_tokens, max(window - reserve, 0))
        prompt = self.family.chat_prompt(past, message)
        chunk: list[int] = []
        raw = ""
        cut: list[str] = []
        for kind, value in self._generate(prompt, self.family.chat_scaffold(spoken, typed), sampling):
            if kind == "warning":
                cut.append(value)  # type: ignore[arg-type]
            elif kind == "text":
                slot, delta = value  # type: ignore[misc]
                yield TranscriptDelta(delta) if slot == "transcript" else TextDelta(delta)
            elif kind == "unit":
                chunk.append(value)  # type: ignore[arg-type]
                if len(chunk) >= self.cfg.unit_chunk:
                    yield UnitChunk(chunk)
                    chunk = []
            else:
                raw = value  # type: ignore[assignment]
        if chunk:
            yield UnitChunk(chunk)
        reply = parse_reply(self.family, raw)
        reply.warnings = cut + reply.warnings
        if not spoken:
            reply.transcript = typed or ""
        history.append(Turn(user_text=typed, user_units=units, transcript=reply.transcript, reply_text=reply.text, reply_units=reply.units))
        yield ReplyDone(reply)

    def respond(self, history: Conversation, user: str | list[int], sampling: SamplingConfig | None = None) -> ChatReply:
        """Chat, all at once: the final reply of ``stream_respond``."""
        reply = None
        for event in self.stream_respond(history, user, sampling):
            if isinstance(event, ReplyDone):
                reply = event.reply
        assert reply is not None
        return reply


def _offline() -> bool:
    import os

    from engine.hub import hub_reachable

    # an unreachable hub counts as offline: the cache is used, and a miss fails at once with our message
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes") or not hub_reachable()
