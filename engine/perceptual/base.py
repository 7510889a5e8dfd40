"""What the pipeline needs from a perceptual model, whichever kind it is.

A perceptual model turns target RVQ-1 tokens [T] plus a voice prompt into the complete
representation [T, D] that the codec decodes. The flow model generates it directly; SoundStorm
generates RVQ-2..8 codes, which the codec's codebooks turn into the same representation.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from engine.codec import DTYPES, Codec
from engine.errors import EngineError, ModelUnavailableError
from engine.hub import locate_files
from engine.perceptual.config import FlowConfig, PerceptualConfig, SoundStormConfig
from engine.perceptual.enroll import EnrollSettings, enroll
from engine.perceptual.flow_model import ADAPTED_DECODER_FILE, FlowModel, FlowModelConfig
from engine.perceptual.soundstorm import SoundStorm, SoundStormModelConfig


@dataclass
class Prompt:
    """A voice prompt. codes [8, P] (None when part of it is continuous, e.g. a flow model's own
    output fed back as left context); embeddings [P, D]."""

    codes: Tensor | None
    semantic_emb: Tensor
    complete_emb: Tensor
    # how many leading frames are the voice's own recording (the rest: generated frames appended as left
    # context while streaming); None = all of them. Voice enrollment learns from those frames only.
    voice_frames: int | None = None

    @classmethod
    def from_codes(cls, codes: Tensor, codec: Codec) -> "Prompt":
        codes = torch.as_tensor(codes).long()
        if codes.dim() != 2 or codes.shape[0] != codec.n_q:
            raise ValueError(f"prompt codes must be [{codec.n_q}, P], got {tuple(codes.shape)}")
        return cls(codes, codec.embed(codes[:1]), codec.embed(codes), int(codes.shape[1]))

    def voice(self) -> tuple[Tensor, Tensor]:
        """The voice's own frames: (complete [V, D], RVQ-1 [V, D]) embeddings."""
        v = self.num_frames if self.voice_frames is None else self.voice_frames
        return self.complete_emb[:v], self.semantic_emb[:v]

    def voice_key(self) -> str:
        """A digest of the voice's own frames: equal for a prompt and its streamed extensions."""
        complete, _ = self.voice()
        return hashlib.sha1(complete.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()

    @property
    def num_frames(self) -> int:
        return int(self.complete_emb.shape[0])

    def extended(self, codec: Codec, tokens: Tensor, complete_emb: Tensor, codes: Tensor | None = None) -> "Prompt":
        """This prompt continued by generated frames: RVQ-1 ``tokens`` [T], their ``complete_emb``
        [T, D] and, for a discrete model, their ``codes`` [8, T] (a prompt continuation)."""
        joined = None if self.codes is None or codes is None else torch.cat([self.codes, torch.as_tensor(codes).long()], dim=1)
        return Prompt(joined, torch.cat([self.semantic_emb, codec.semantic_embedding(torch.as_tensor(tokens).long())]),
                      torch.cat([self.complete_emb, torch.as_tensor(complete_emb).float()]),
                      self.num_frames if self.voice_frames is None else self.voice_frames)


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
        frame_offset: int = 0,
    ) -> Tensor:
        """Target RVQ-1 tokens [T] + prompt -> complete embedding [T, D] (float32, CPU).
        ``frame_offset``: index of the first target frame within the whole utterance (streaming: a
        seeded model draws the same noise for a frame whether it comes in one pass or in chunks)."""
        ...

    def output_decoder(self, chain: str | None = None) -> torch.nn.Module | None:
        """The codec decoder to decode ``generate``'s output of ``chain`` with (``Codec.decode(decoder=)``):
        one adapted to this model's output, or None for the codec's own."""
        ...


def frame_noise(seed: int, frames: range, dim: int) -> Tensor:
    """Standard normal noise [len(frames), dim], one private generator per frame index, so that
    frame i gets the same noise whatever call it is generated in (negative indices: prompt frames)."""
    rows = [torch.randn(dim, generator=torch.Generator().manual_seed((seed * 1_000_003 + i) % (2**63))) for i in frames]
    return torch.stack(rows) if rows else torch.zeros(0, dim)


def _seeded(seed: int, build):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def flow_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto``: bfloat16 on a CUDA device that supports it, else float32; names as in torch."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    if name not in DTYPES:
        raise ValueError(f"unknown perceptual.flow.dtype {name!r}; use auto, {', '.join(DTYPES)}")
    return DTYPES[name]


class FlowPerceptual:
    """The continuous perceptual model behind the PerceptualModel interface."""

    kind = "flow"

    def __init__(self, cfg: FlowConfig, codec: Codec, device: torch.device):
        self.cfg, self.codec, self.device = cfg, codec, device
        self.dtype = flow_dtype(cfg.dtype, device)
        self._models: dict[str, FlowModel] = {}
        self._decoders: dict[str, torch.nn.Module | None] = {}  # per chain: the codec decoder adapted to that model's output
        self._enrolled: OrderedDict[tuple[str, str], FlowModel] = OrderedDict()  # (chain, voice key) -> enrolled copy
        self._enrolled_lock = threading.Lock()
        self.default_chain = cfg.chain if cfg.random_init else None
        if not cfg.random_init:
            if not cfg.path:
                raise ModelUnavailableError(
                    "no flow-matching model is configured (no public weights exist): train one with "
                    "`python -m engine train-flow`, then --set perceptual.flow.path=RUN/final, or use --perceptual soundstorm"
                )
            model = self._prepare(FlowModel.from_pretrained(cfg.path, codec=codec.name, device=device).cast_weights(self.dtype))
            self.default_chain = model.cfg.chain
            self._models[model.cfg.chain] = model
            self._decoders[model.cfg.chain] = self._adapted_decoder(cfg.path)

    def _adapted_decoder(self, path: str) -> torch.nn.Module | None:
        """The codec decoder adapted to the model in ``path`` (``ADAPTED_DECODER_FILE``), where it has one and it is wanted."""
        if not self.cfg.adapted_decoder:
            return None
        from engine.config import local_model_folder

        folder = local_model_folder(path)  # a bundled model's repo path works from any directory
        found = locate_files(path if folder is None else folder, [ADAPTED_DECODER_FILE])[ADAPTED_DECODER_FILE]
        return None if found is None else self.codec.load_decoder(found)

    def output_decoder(self, chain: str | None = None) -> torch.nn.Module | None:
        if self.cfg.requantize:  # snapped onto codes, the output is a sum of codebook vectors again: the codec's own decoder
            return None
        self.model(chain)  # loads the other chain's model (and its decoder) on first use
        return self._decoders.get(chain or self.default_chain)

    def model(self, chain: str | None) -> FlowModel:
        chain = chain or self.default_chain
        if chain not in ("implicit", "explicit"):
            raise ValueError(f"unknown chain {chain!r}; use implicit or explicit")
        if chain not in self._models and not self.cfg.random_init and self.cfg.other_chain_path:
            other = self._prepare(FlowModel.from_pretrained(self.cfg.other_chain_path, codec=self.codec.name, device=self.device)
                                  .cast_weights(self.dtype))
            if other.cfg.chain != chain:
                raise EngineError(f"perceptual.flow.other_chain_path {self.cfg.other_chain_path} holds a {other.cfg.chain}-chain model, "
                                  f"not the {chain} chain that was asked for")
            self._models[chain] = other
            self._decoders[chain] = self._adapted_decoder(self.cfg.other_chain_path)
        if chain not in self._models:
            if not self.cfg.random_init:
                raise EngineError(f"the loaded flow model was trained for the {self.default_chain} chain; a model trained for the {chain} chain "
                                  f"is needed (set perceptual.flow.other_chain_path to one)")
            cfg = FlowModelConfig.preset(self.cfg.size, feature_dim=self.codec.dim, codec=self.codec.name, chain=chain)
            self._models[chain] = self._prepare(_seeded(self.cfg.seed, lambda: FlowModel(cfg)).to(self.device).eval().cast_weights(self.dtype))
        return self._models[chain]

    def _prepare(self, model: FlowModel) -> FlowModel:
        """Compile the network where perceptual.flow.compile asks for it (auto: on CUDA, with CUDA graphs)."""
        setting = self.cfg.compile
        if setting not in ("auto", "on", "off"):
            raise ValueError(f"unknown perceptual.flow.compile {setting!r}; use auto, on or off")
        if setting == "on" or (setting == "auto" and self.device.type == "cuda"):
            model.enable_compile("reduce-overhead" if self.device.type == "cuda" else "default", self.cfg.compile_bucket_frames)
        return model

    def enroll_settings(self) -> EnrollSettings:
        c = self.cfg
        return EnrollSettings(c.enroll_steps, c.enroll_lr, c.enroll_batch, c.enroll_params, c.seed).validated()

    def enrolled(self, prompt: Prompt, chain: str | None = None) -> FlowModel:
        """The model for ``prompt``'s voice: with ``enroll_steps`` a copy fine-tuned on the voice's own
        frames (made once per voice and chain, the last ``enroll_cache`` kept), else the model itself."""
        model = self.model(chain)
        settings = self.enroll_settings()
        if settings.steps == 0:
            return model
        key = (chain or self.default_chain, prompt.voice_key())
        with self._enrolled_lock:  # requests may come from several threads (the web UI)
            if key in self._enrolled:
                self._enrolled.move_to_end(key)
                return self._enrolled[key]
        complete, semantic = prompt.voice()
        tuned = enroll(model, complete, semantic, settings)
        if tuned is not model:
            tuned = self._prepare(tuned)
        with self._enrolled_lock:
            self._enrolled[key] = tuned
            while len(self._enrolled) > max(1, self.cfg.enroll_cache):  # at least the voice speaking now
                self._enrolled.popitem(last=False)
        return tuned

    def generate(self, tokens: Tensor, prompt: Prompt, *, steps=None, chain=None, guidance_scale=None, seed=None, frame_offset=0) -> Tensor:
        model = self.enrolled(prompt, chain)
        semantic = self.codec.semantic_embedding(tokens)  # [T, D]
        noise = None
        if seed is not None:  # per-frame noise: prompt frames, then the utterance's frames up to this chunk's end
            p, t = prompt.num_frames, int(semantic.shape[0])
            noise = [frame_noise(seed, range(frame_offset - p, frame_offset + t), self.codec.dim)]
        complete = model.generate(
            [semantic], [prompt.complete_emb], [prompt.semantic_emb],
            steps=steps or self.cfg.steps, method=self.cfg.solver, schedule=self.cfg.schedule,
            guidance_scale=self.cfg.guidance_scale if guidance_scale is None else guidance_scale,
            temperature=self.cfg.temperature, seed=seed, noise=noise,
        )[0]  # [T, D]
        if self.cfg.requantize:
            complete = self.codec.embed(self.codec.requantize(complete, tokens))
        return complete


class SoundStormPerceptual:
    """The discrete baseline behind the PerceptualModel interface (codes -> codebook embeddings)."""

    kind = "soundstorm"

    def __init__(self, cfg: SoundStormConfig, codec: Codec, device: torch.device):
        self.cfg, self.codec = cfg, codec
        if cfg.random_init:
            mcfg = SoundStormModelConfig.preset(cfg.size, codec=codec.name)
            self.model = _seeded(cfg.seed, lambda: SoundStorm(mcfg)).to(device).eval()
        else:
            if not cfg.path:
                raise ModelUnavailableError("no SoundStorm checkpoint configured: set perceptual.soundstorm.path")
            self.model = SoundStorm.from_pretrained(cfg.path, cfg.filename, codec=codec.name, device=device, checkpoint_codec=cfg.checkpoint_codec)

    def generate_codes(self, tokens: Tensor, prompt: Prompt, *, steps=None, chain=None, guidance_scale=None, seed=None, frame_offset=0) -> Tensor:
        """Target RVQ-1 tokens [T] + prompt -> codes [8, T] (RVQ-1 = ``tokens``)."""
        if prompt.codes is None:
            raise EngineError("SoundStorm needs the discrete codes of its prompt; this prompt holds only embeddings")
        codes = self.model.generate(
            tokens[None], prompt.codes.t()[None], steps=steps or self.cfg.steps, greedy=self.cfg.greedy,
            temperature=self.cfg.temperature, mode=self.cfg.mode, keep_prompt=self.cfg.keep_prompt, seed=seed,
        )  # [1, T, 8]
        return codes[0].t()

    def generate(self, tokens: Tensor, prompt: Prompt, *, steps=None, chain=None, guidance_scale=None, seed=None, frame_offset=0) -> Tensor:
        return self.codec.embed(self.generate_codes(tokens, prompt, steps=steps, seed=seed))  # [T, D]

    def output_decoder(self, chain: str | None = None) -> None:
        return None  # codes: sums of codebook vectors, which the codec's own decoder was trained on


def load_perceptual(kind: str, cfg: PerceptualConfig, codec: Codec, device: torch.device) -> PerceptualModel:
    """Build the configured perceptual model (``flow`` or ``soundstorm``)."""
    if kind == "flow":
        return FlowPerceptual(cfg.flow, codec, device)
    if kind == "soundstorm":
        return SoundStormPerceptual(cfg.soundstorm, codec, device)
    raise ValueError(f"unknown perceptual model {kind!r}; use flow or soundstorm")
