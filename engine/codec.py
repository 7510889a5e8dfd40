"""SpeechTokenizer codec: 16 kHz waveform <-> 8 RVQ layers at 50 Hz, and their embeddings.

Definitions (DESIGN.md "The chain"), for codes ``c`` of shape [8, T]:
    semantic tokens  s  = c[0]
    semantic emb     zs = quantizer.decode(c[:1], st=0)     [T, D]
    perceptual emb   zp = quantizer.decode(c[1:], st=1)     [T, D]
    complete emb     z  = zs + zp = quantizer.decode(c)     [T, D]
Frame bookkeeping is exact: T = ceil(samples / 320); decoded length = T * 320.
The quantizer always runs in float32 (nearest-codebook search is unreliable in half precision).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from engine.codec_config import CodecConfig
from engine.errors import ModelUnavailableError
from engine.hub import resolve_files

__all__ = ["Codec", "CodecConfig", "Encoded", "EncodedBatch", "TINY_CODEC_CONFIG", "resolve_device", "resolve_dtype"]

SAMPLE_RATE = 16000
HOP_LENGTH = 320

#: Hyper-parameters of the random test codec: the real SpeechTokenizer class, small.
TINY_CODEC_CONFIG: dict = {
    "n_filters": 4,
    "strides": [8, 5, 4, 2],
    "dimension": 64,
    "semantic_dimension": 64,
    "bidirectional": True,
    "dilation_base": 2,
    "residual_kernel_size": 3,
    "n_residual_layers": 1,
    "lstm_layers": 1,
    "activation": "ELU",
    "sample_rate": SAMPLE_RATE,
    "n_q": 8,
    "codebook_size": 1024,
}

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelUnavailableError(f"device {device!r} was asked for but CUDA is not available; use --set pipeline.device=cpu")
    return dev


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    dtype = DTYPES[name]
    if device.type == "cpu" and dtype == torch.float16:
        return torch.float32  # half-precision convolutions are not worth it on CPU
    return dtype


@dataclass
class Encoded:
    """One utterance. Shapes: codes [8, T]; embeddings [T, D]."""

    codes: Tensor
    semantic_tokens: Tensor
    semantic_emb: Tensor
    perceptual_emb: Tensor
    complete_emb: Tensor

    @property
    def num_frames(self) -> int:
        return int(self.codes.shape[-1])


@dataclass
class EncodedBatch:
    """A padded batch. Shapes: codes [B, 8, T]; embeddings [B, T, D]; lengths [B] in frames."""

    codes: Tensor
    semantic_tokens: Tensor
    semantic_emb: Tensor
    perceptual_emb: Tensor
    complete_emb: Tensor
    lengths: Tensor

    def item(self, i: int) -> Encoded:
        n = int(self.lengths[i])
        return Encoded(
            self.codes[i, :, :n],
            self.semantic_tokens[i, :n],
            self.semantic_emb[i, :n],
            self.perceptual_emb[i, :n],
            self.complete_emb[i, :n],
        )


class Codec:
    """One interface over every codec kind, with exact frame bookkeeping.

    Kinds: the real ``speechtokenizer.SpeechTokenizer`` (public checkpoints, the tiny test model) and
    the demo codec (``engine.melcodec``: trained here, mel decoder + HiFi-GAN). Both expose the same
    module layout (``encoder``, ``quantizer``, ``decoder``, ``n_q``, ``sample_rate``,
    ``downsample_rate``), so the rest of the chain cannot tell which one it drives."""

    sample_rate = SAMPLE_RATE
    hop_length = HOP_LENGTH
    frame_rate = SAMPLE_RATE // HOP_LENGTH

    def __init__(self, model: torch.nn.Module, name: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        self.model = model.eval()
        self.name = name
        self.device = torch.device(device)
        self.dtype = dtype
        self.n_q = int(model.n_q)
        self.codebook_size = int(model.quantizer.bins)
        self.dim = int(model.quantizer.dimension)
        if int(model.downsample_rate) != HOP_LENGTH or int(model.sample_rate) != SAMPLE_RATE:
            raise ModelUnavailableError(
                f"codec {name!r} runs at {model.sample_rate} Hz with hop {model.downsample_rate}; "
                f"this project needs {SAMPLE_RATE} Hz and hop {HOP_LENGTH}"
            )
        self.model.to(self.device)
        self.model.encoder.to(dtype)
        self.model.decoder.to(dtype)
        self.model.requires_grad_(False)

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _build(config: dict) -> torch.nn.Module:
        from speechtokenizer import SpeechTokenizer  # imported lazily: heavy

        with warnings.catch_warnings():  # the package uses the deprecated weight_norm API
            warnings.simplefilter("ignore", FutureWarning)
            model = SpeechTokenizer(config)
        model._config = dict(config)  # kept for save_pretrained
        return model

    @classmethod
    def tiny(cls, seed: int = 0, device: str | torch.device = "cpu") -> "Codec":
        """A small randomly initialised SpeechTokenizer (tests, offline UI work; not a real voice)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls._build(TINY_CODEC_CONFIG)
            _init_codebooks_from_encoder(model, seed)
        return cls(model, name="tiny", device=device)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        subfolder: str | None = None,
        *,
        config_file: str = "config.json",
        weights_file: str = "SpeechTokenizer.pt",
        name: str | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> "Codec":
        """Load from a local folder or a hub id (+ subfolder) holding ``config.json`` and the weights.

        The Snake variant (``fnlp/AnyGPT-speech-modules``, subfolder ``speechtokenizer``) names its
        weights ``ckpt.dev``.
        """
        cfg_path, weights_path = resolve_files(path, [config_file, weights_file], subfolder=subfolder, what="codec")
        with open(cfg_path, encoding="utf-8") as f:
            config = json.load(f)
        if config.get("kind") == "mel":  # the demo codec (engine.melcodec)
            from engine.melcodec.model import MelCodecModel

            if weights_path.parent != cfg_path.parent:
                raise ModelUnavailableError(f"the demo codec's {config_file} and {weights_file} must sit in one folder")
            model = MelCodecModel.from_pretrained(cfg_path.parent, weights_file=weights_path.name)
            return cls(model, name=name or model.cfg.name, device=device, dtype=dtype)
        model = cls._build(config)
        try:
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupt or foreign file
            raise ModelUnavailableError(f"could not read codec weights {weights_path}: {exc}") from exc
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ModelUnavailableError(
                f"codec weights {weights_path} do not match {cfg_path}: "
                f"{len(missing)} missing keys (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
            )
        if name is None:
            name = "snake" if config.get("activation") == "Snake" else "hubert_avg"
        return cls(model, name=name, device=device, dtype=dtype)

    @classmethod
    def from_config(cls, cfg: CodecConfig, device: str | torch.device | None = None) -> "Codec":
        dev = resolve_device(device if device is not None else cfg.device)
        if cfg.random_init:
            codec = cls.tiny(seed=cfg.seed, device=dev)
            codec.name = cfg.name
            return codec
        path = Path(cfg.path).expanduser()
        if not path.is_absolute() and not path.exists():
            from engine.config import REPO_ROOT

            if (REPO_ROOT / path).exists():  # bundled models (assets/models/...) work from any directory
                path = REPO_ROOT / path
        return cls.from_pretrained(
            str(path) if path.exists() else cfg.path,
            cfg.subfolder,
            config_file=cfg.config_file,
            weights_file=cfg.weights_file,
            name=cfg.name,
            device=dev,
            dtype=resolve_dtype(cfg.dtype, dev),
        )

    def save_pretrained(self, folder: str | Path, weights_file: str = "SpeechTokenizer.pt", config: dict | None = None) -> Path:
        """Write the checkpoint layout of the codec's kind: SpeechTokenizer's ``config.json`` + a bare
        state dict, or the demo codec's ``config.json`` + ``model.safetensors``."""
        folder = Path(folder)
        if hasattr(self.model, "save_pretrained"):  # the demo codec writes its own format
            return self.model.save_pretrained(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if config is None:
            config = getattr(self.model, "_config", None)
        if config is None:
            raise ValueError("the codec's construction config is unknown; pass config=")
        (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        state = {k: v.detach().float().cpu() if v.is_floating_point() else v.cpu() for k, v in self.model.state_dict().items()}
        torch.save(state, folder / weights_file)
        return folder

    # ------------------------------------------------------------------ bookkeeping
    def num_frames(self, num_samples: int) -> int:
        """T = ceil(samples / 320)."""
        return math.ceil(num_samples / HOP_LENGTH)

    def num_samples(self, num_frames: int) -> int:
        return num_frames * HOP_LENGTH

    # ------------------------------------------------------------------ encode
    def _as_tensor(self, wav: np.ndarray | Tensor) -> Tensor:
        t = torch.as_tensor(np.asarray(wav, dtype=np.float32) if not isinstance(wav, Tensor) else wav)
        if t.dim() != 1:
            raise ValueError(f"expected a 1-D 16 kHz waveform, got shape {tuple(t.shape)}")
        if t.numel() == 0:
            raise ValueError("cannot encode an empty waveform")
        return t.float()

    @torch.inference_mode()
    def encode_batch(self, wavs: Sequence[np.ndarray | Tensor]) -> EncodedBatch:
        """Encode several 1-D 16 kHz waveforms at once (zero-padded to a multiple of the hop)."""
        tensors = [self._as_tensor(w) for w in wavs]
        if not tensors:
            raise ValueError("encode_batch needs at least one waveform")
        lengths = torch.tensor([self.num_frames(t.numel()) for t in tensors])
        total = int(lengths.max()) * HOP_LENGTH
        batch = torch.zeros(len(tensors), 1, total)  # [B, 1, S]
        for i, t in enumerate(tensors):
            batch[i, 0, : t.numel()] = t
        batch = batch.to(self.device, self.dtype)
        if hasattr(self.model, "encode_codes"):  # the demo codec (v3 computes RVQ-1 from Whisper's features)
            codes = self.model.encode_codes(batch, [t.numel() for t in tensors], n_q=self.n_q)  # [8, B, T]
        else:
            latent = self.model.encoder(batch).float()  # [B, D, T]
            latent = latent[..., : int(lengths.max())]
            codes = self.model.quantizer.encode(latent, n_q=self.n_q, st=0)  # [8, B, T]
        codes = codes.transpose(0, 1).contiguous()  # [B, 8, T]
        zs = self.embed(codes[:, :1])
        zp = self.embed(codes[:, 1:], start_layer=1)
        return EncodedBatch(
            codes=codes.cpu(),
            semantic_tokens=codes[:, 0].cpu(),
            semantic_emb=zs.cpu(),
            perceptual_emb=zp.cpu(),
            complete_emb=(zs + zp).cpu(),
            lengths=lengths,
        )

    def encode(self, wav: np.ndarray | Tensor) -> Encoded:
        """Encode one 1-D 16 kHz waveform. codes [8, T], embeddings [T, D]."""
        return self.encode_batch([wav]).item(0)

    # ------------------------------------------------------------------ embeddings
    @torch.inference_mode()
    def embed(self, codes: Tensor, start_layer: int = 0) -> Tensor:
        """Sum of the codebook vectors of ``codes`` [..., n, T] (layers start_layer..) -> [..., T, D]."""
        codes = torch.as_tensor(codes).long().to(self.device)
        if codes.dim() < 2:
            raise ValueError(f"codes must be [..., n, T], got shape {tuple(codes.shape)}")
        if start_layer + codes.shape[-2] > self.n_q:
            raise ValueError(f"layers {start_layer}..{start_layer + codes.shape[-2] - 1} exceed the codec's {self.n_q}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"code ids must lie in 0..{self.codebook_size - 1}")
        lead = codes.shape[:-2]
        flat = codes.reshape(-1, codes.shape[-2], codes.shape[-1]).transpose(0, 1)  # [n, B', T]
        quantized = self.model.quantizer.decode(flat, st=start_layer)  # [B', D, T]
        return quantized.transpose(1, 2).reshape(*lead, codes.shape[-1], self.dim).float().cpu()

    def codebooks(self) -> Tensor:
        """All codebook vectors [n_q, codebook_size, D] (float32, CPU): embed(codes) is the sum of
        ``codebooks()[l, codes[l]]`` over layers l (what training looks up on its own device)."""
        books = []
        for layer in self.model.quantizer.vq.layers:
            ids = torch.arange(self.codebook_size, device=self.device)[None]  # [1, C]
            books.append(layer.decode(ids)[0].t().float().cpu())  # [C, D]
        return torch.stack(books)

    def semantic_embedding(self, tokens: Tensor) -> Tensor:
        """RVQ-1 embedding of semantic tokens [..., T] -> [..., T, D]."""
        tokens = torch.as_tensor(tokens)
        return self.embed(tokens.unsqueeze(-2), start_layer=0)

    @torch.inference_mode()
    def requantize(self, complete: Tensor, tokens: Tensor) -> Tensor:
        """Snap a predicted complete embedding [T, D] back onto the codec's codes, keeping the
        semantic tokens [T] as they are: RVQ-2..8 quantise ``complete - zs`` residually, as the
        encoder's quantizer would. Returns codes [8, T] (``embed`` of them is a valid complete embedding)."""
        complete = torch.as_tensor(complete)
        tokens = torch.as_tensor(tokens).long().reshape(-1)
        if complete.dim() != 2 or complete.shape[-1] != self.dim or complete.shape[0] != tokens.shape[0]:
            raise ValueError(f"expected an embedding [T, {self.dim}] and tokens [T], got {tuple(complete.shape)} and {tuple(tokens.shape)}")
        if tokens.numel() == 0:
            return torch.zeros(self.n_q, 0, dtype=torch.long)
        residual = complete.float() - self.semantic_embedding(tokens)  # [T, D]: the perceptual part
        rest = self.model.quantizer.vq.encode(residual.t().unsqueeze(0).to(self.device), n_q=self.n_q, st=1)  # [7, 1, T]
        return torch.cat([tokens[None], rest[:, 0].long().cpu()])  # [8, T]

    # ------------------------------------------------------------------ decode
    @torch.inference_mode()
    def decode(self, emb: Tensor, start_frame: int = 0, decoder: torch.nn.Module | None = None) -> Tensor:
        """Complete embedding [T, D] or [B, T, D] -> waveform [T*320] or [B, T*320] (float32, CPU).
        ``start_frame``: where this window starts in its utterance; windows of one utterance then
        decode to its one-pass waveform but for their edges (the demo codec's vocoder grid depends
        on it; SpeechTokenizer's decoder is the same at any frame). ``decoder``: another decoder of
        this codec's architecture (``load_decoder``: one adapted to a flow model's output) instead of its own."""
        emb = torch.as_tensor(emb)
        single = emb.dim() == 2
        if single:
            emb = emb.unsqueeze(0)
        if emb.dim() != 3 or emb.shape[-1] != self.dim:
            raise ValueError(f"expected an embedding [B, T, {self.dim}], got shape {tuple(emb.shape)}")
        latent = emb.transpose(1, 2).to(self.device, self.dtype)  # [B, D, T]
        decoder = self.model.decoder if decoder is None else decoder
        wav = (decoder(latent, start_frame) if start_frame and getattr(decoder, "grid_aware", False) else decoder(latent))[:, 0].float()  # [B, S]
        wav = wav[:, : emb.shape[1] * HOP_LENGTH].cpu()
        return wav[0] if single else wav

    def load_decoder(self, path: str | Path) -> torch.nn.Module:
        """A decoder of this codec's architecture saved on its own (``engine.melcodec.model.save_decoder``:
        the demo codec's decoder adapted to a flow model's output), ready for ``decode(..., decoder=)``."""
        from engine.melcodec.model import MelCodecModel, load_decoder

        if not isinstance(self.model, MelCodecModel):
            raise ModelUnavailableError(f"{path}: only the demo codec's decoder can be swapped; codec {self.name!r} has none to swap "
                                        "(set perceptual.flow.adapted_decoder=false)")
        decoder = load_decoder(self.model.cfg, self.name, path)
        return decoder.to(self.device, self.dtype).requires_grad_(False)

    @property
    def phoneme_symbols(self) -> list[str]:
        """The symbols of the demo codec's phoneme head on RVQ-1 (espeak-ng IPA characters; CTC id
        i + 1 is symbol i, 0 the blank), or [] for a codec without one (SpeechTokenizer)."""
        head = getattr(self.model, "phoneme_head", None)
        return list(self.model.cfg.phonemes) if head is not None else []

    @torch.inference_mode()
    def phoneme_log_probs(self, tokens: Tensor) -> Tensor:
        """CTC log-probabilities of the phoneme head read off semantic tokens [B, T] -> [B, T, symbols + 1]
        (float32, CPU). Raises ModelUnavailableError for a codec without a phoneme head."""
        if not self.phoneme_symbols:
            raise ModelUnavailableError(f"codec {self.name!r} has no phoneme head (only the demo codec, trained with loss.phoneme_ctc, has one)")
        emb = self.semantic_embedding(torch.as_tensor(tokens))  # [B, T, D]
        head = self.model.phoneme_head.weight
        logits = self.model.phoneme_logits(emb.transpose(1, 2).to(head.device, head.dtype)).float()  # [B, T, symbols + 1]
        return logits.log_softmax(-1).cpu()

    def decode_codes(self, codes: Tensor) -> Tensor:
        """Codes [8, T] or [B, 8, T] -> waveform [T*320] or [B, T*320]."""
        return self.decode(self.embed(codes))


@torch.no_grad()
def _init_codebooks_from_encoder(model: torch.nn.Module, seed: int) -> None:
    """Give a random codec usable codebooks: each RVQ layer is seeded with residual vectors of
    its own input on a fixed calibration signal (what k-means init would start from), so that
    different sounds get different codes. Marks the codebooks as initialised."""
    gen = torch.Generator().manual_seed(seed)
    seconds = 8
    t = torch.arange(SAMPLE_RATE * seconds) / SAMPLE_RATE
    f0 = 120 + 80 * torch.sin(2 * math.pi * 0.7 * t)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / SAMPLE_RATE
    envelope = 0.5 + 0.5 * torch.sin(2 * math.pi * 3 * t)
    signal = 0.3 * envelope * (torch.sin(phase) + 0.5 * torch.sin(3 * phase)) + 0.05 * torch.randn(t.shape, generator=gen)
    residual = model.encoder(signal.view(1, 1, -1)).float()  # [1, D, T]
    frames = residual[0].t()  # [T, D]
    for layer in model.quantizer.vq.layers:
        codebook = layer._codebook
        idx = torch.randint(0, frames.shape[0], (codebook.codebook_size,), generator=gen)
        noise = torch.randn(codebook.codebook_size, frames.shape[1], generator=gen)
        scale = frames.std().clamp(min=1e-6)
        embed = frames[idx] + 0.5 * scale * noise
        codebook.embed.copy_(embed)
        codebook.embed_avg.copy_(embed)
        codebook.inited.fill_(1.0)
        chosen = layer.decode(layer.encode(frames.t().unsqueeze(0)))[0].t()  # [T, D]
        frames = frames - chosen
