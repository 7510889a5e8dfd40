"""What the pipeline needs from a perceptual model, whichever kind it is.

A perceptual model turns target RVQ-1 tokens [T] plus a voice prompt into the complete
representation [T, D] that the codec decodes. The flow model generates it directly; SoundStorm
generates RVQ-2..8 codes, which the codec's codebooks turn into the same representation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from engine.codec import Codec
from engine.errors import ModelUnavailableError
from engine.perceptual.config import PerceptualConfig


@dataclass
class Prompt:
    """A voice prompt. codes [8, P]; embeddings [P, D]."""

    codes: Tensor
    semantic_emb: Tensor
    complete_emb: Tensor

    @classmethod
    def from_codes(cls, codes: Tensor, codec: Codec) -> "Prompt":
        codes = torch.as_tensor(codes).long()
        if codes.dim() != 2 or codes.shape[0] != codec.n_q:
            raise ValueError(f"prompt codes must be [{codec.n_q}, P], got {tuple(codes.shape)}")
        return cls(codes, codec.embed(codes[:1]), codec.embed(codes))

    @property
    def num_frames(self) -> int:
        return int(self.codes.shape[1])


class PerceptualModel(Protocol):
    kind: str

    def generate(
        self,
        tokens: Tensor,
        prompt: Prompt,
        *,
        steps: int | None = None,
        chain: str | None = None,
        guidance_scale: float | None = None,
        seed: int | None = None,
    ) -> Tensor:
        """Target RVQ-1 tokens [T] + prompt -> complete embedding [T, D] (float32, CPU)."""
        ...
