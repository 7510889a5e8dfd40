"""Configuration of the SpeechTokenizer codec (import-light)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CodecConfig:
    """Which SpeechTokenizer to load. Models trained on one codec only work with that codec."""

    name: str = "hubert_avg"  # identity stored with every model trained on this codec
    path: str = "fnlp/SpeechTokenizer"  # hub id or local folder
    subfolder: str | None = "speechtokenizer_hubert_avg"
    config_file: str = "config.json"
    weights_file: str = "SpeechTokenizer.pt"  # the Snake variant names it "ckpt.dev"
    random_init: bool = False  # tiny profile: small random SpeechTokenizer built in code
    seed: int = 0
    device: str = "auto"
    dtype: str = "float32"  # float32 | float16 | bfloat16
