"""Configuration of the semantic LLM (import-light: dataclasses only)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SamplingConfig:
    """Decoding settings (AnyGPT's defaults: temperature 1, top-p 1, repetition penalty 1.05)."""

    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    repetition_penalty: float = 1.05
    max_new_tokens: int = 1500
    seed: int | None = None


@dataclass
class SemanticConfig:
    """Which semantic LLM to load and how (see docs/semantic.md)."""

    path: str = "fnlp/AnyGPT-chat"  # hub id or local folder
    family: str = "anygpt"  # anygpt | speechgpt_gen (prompt templates and unit tokens)
    random_init: bool = False  # tiny profile: tiny random LLaMA + tokenizer built in code
    seed: int = 0
    quant: str = "none"  # none | 4bit (bitsandbytes NF4)
    dtype: str = "auto"  # auto: bf16/fp16 on CUDA, float32 on CPU
    device: str = "auto"
    max_context_tokens: int = 4096
    unit_chunk: int = 50  # stream reply units in chunks of this many frames (1 s)
    max_text_tokens: int = 300  # cap of a transcript / text answer; the speech units get the rest
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    # decode loop (engine.semantic.decoding): auto = static KV cache for LLaMA models, else eager
    decoder: str = "auto"  # auto | static | eager
    compile: str = "auto"  # torch.compile of the decode step: auto (CUDA, not 4-bit) | on | off
    sync_every: int = 8  # CUDA: speech tokens sampled on the device between two host syncs
