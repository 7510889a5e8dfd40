"""The demo codec's network: encoder -> RVQ -> mel decoder (+ frozen vocoder), behind SpeechTokenizer's
module layout (``encoder``, ``quantizer``, ``decoder``, ``n_q``, ``sample_rate``, ``downsample_rate``) so
that ``engine.codec.Codec`` drives it unchanged. Losses live with the trainer (engine.train.train_codec).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.errors import ModelUnavailableError
from engine.melcodec.config import MelCodecConfig
from engine.melcodec.features import LogMel

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
_TRAINING_BUFFERS = ("cluster_size", "embed_avg")  # EMA statistics: not needed to encode or decode


class ConvNeXtBlock(nn.Module):
    """Depthwise conv -> LayerNorm -> MLP, residual with a learned scale. [B, C, T] -> [B, C, T]."""

    def __init__(self, channels: int, kernel_size: int, mlp_ratio: float):
        super().__init__()
        hidden = int(channels * mlp_ratio)
        self.dw = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
        self.norm = nn.LayerNorm(channels)
        self.up = nn.Linear(channels, hidden)
        self.down = nn.Linear(hidden, channels)
        self.scale = nn.Parameter(torch.full((channels,), 0.1))

    def forward(self, x: Tensor) -> Tensor:
        y = self.dw(x).transpose(1, 2)  # [B, T, C]
        y = self.down(F.gelu(self.up(self.norm(y))))
        return x + (self.scale * y).transpose(1, 2)


class SemanticAdapter(nn.Module):
    """Codec v3's RVQ-1 input: Whisper features [B, T, 384] -> [B, D, T] (ConvNeXt blocks at 50 Hz)."""

    def __init__(self, cfg: MelCodecConfig):
        super().__init__()
        c = cfg.channels
        self.inp = nn.Linear(cfg.semantic_dim, c)
        self.blocks = nn.Sequential(*[ConvNeXtBlock(c, cfg.kernel_size, cfg.mlp_ratio) for _ in range(cfg.semantic_blocks)])
        self.norm = nn.LayerNorm(c)
        self.out = nn.Linear(c, cfg.dimension)

    def forward(self, feats: Tensor) -> Tensor:
        x = self.blocks(self.inp(feats).transpose(1, 2))  # [B, C, T]
        return self.out(self.norm(x.transpose(1, 2))).transpose(1, 2)  # [B, D, T]


class MelEncoder(nn.Module):
    """Waveform [B, 1, S] (S a multiple of 320) -> latent [B, D, S / 320]."""

    def __init__(self, cfg: MelCodecConfig):
        super().__init__()
        c = cfg.channels
        self.hop = cfg.hop_length
        self.n_mels = cfg.n_mels_in
        self.mel = LogMel(cfg.sample_rate, cfg.n_fft_in, cfg.hop_length // 2, cfg.n_mels_in, fmax=cfg.sample_rate / 2)
        self.stem = nn.Conv1d(2 * cfg.n_mels_in, c, cfg.kernel_size, padding=cfg.kernel_size // 2)
        self.blocks = nn.Sequential(*[ConvNeXtBlock(c, cfg.kernel_size, cfg.mlp_ratio) for _ in range(cfg.enc_blocks)])
        self.norm = nn.LayerNorm(c)
        self.out = nn.Linear(c, cfg.dimension)

    def forward(self, wav: Tensor) -> Tensor:
        frames = -(-wav.shape[-1] // self.hop)
        mel = self.mel(wav[:, 0])[..., : 2 * frames]  # [B, n_mels, 2T] at 100 Hz
        pairs = mel.reshape(mel.shape[0], self.n_mels, frames, 2).transpose(2, 3).reshape(mel.shape[0], 2 * self.n_mels, frames)
        x = self.blocks(self.stem((pairs + 5.0) / 2.5))  # [B, C, T]
        return self.out(self.norm(x.transpose(1, 2))).transpose(1, 2)  # [B, D, T]


class MelDecoder(nn.Module):
    """Latent [B, D, T] at 50 Hz -> vocoder log-mel [B, 80, mel_frames(T)]."""

    def __init__(self, cfg: MelCodecConfig):
        super().__init__()
        c = cfg.channels
        self.cfg = cfg
        self.inp = nn.Conv1d(cfg.dimension, c, cfg.kernel_size, padding=cfg.kernel_size // 2)
        self.blocks = nn.Sequential(*[ConvNeXtBlock(c, cfg.kernel_size, cfg.mlp_ratio) for _ in range(cfg.dec_blocks)])
        self.norm = nn.LayerNorm(c)
        self.out = nn.Linear(c, 2 * cfg.vocoder_n_mels)  # two mel frames per 50 Hz step

    def hidden(self, latent: Tensor) -> Tensor:
        """The decoder's last hidden state [B, T, C] (normalised): what the mel and the istft head read."""
        return self.norm(self.blocks(self.inp(latent)).transpose(1, 2))

    def forward(self, latent: Tensor, start_frame: int = 0) -> Tensor:
        """``start_frame``: the codec frame the latent starts at. The mel is interpolated to the
        vocoder frames of one fixed time grid (see ``vocoder_frames``), so a window of an utterance
        decodes to the same mel frames as the whole (but for its edges)."""
        b, _, frames = latent.shape
        y = self.out(self.hidden(latent))  # [B, T, 2 * 80]
        mel = y.reshape(b, 2 * frames, self.cfg.vocoder_n_mels).transpose(1, 2)  # [B, 80, 2T] at 100 Hz
        first, count = vocoder_frames(self.cfg, start_frame, frames)
        c = self.cfg
        ratio = 2 * c.sample_rate * c.vocoder_hop / (c.hop_length * c.vocoder_sample_rate)  # 100 Hz frames per vocoder frame
        # centre of vocoder frame j on the 100 Hz frames of this window (align_corners=False convention), clamped to its ends
        src = ((torch.arange(first, first + count, device=mel.device, dtype=torch.float64) + 0.5) * ratio - 0.5 - 2 * start_frame)
        src = src.clamp(0, 2 * frames - 1)
        lo = src.floor().long()
        hi = (lo + 1).clamp(max=2 * frames - 1)
        w = (src - lo).to(mel.dtype)
        mel = mel[..., lo] * (1 - w) + mel[..., hi] * w  # [B, 80, M]
        return mel * 2.5 - 5.0


class ISTFTHead(nn.Module):
    """Codec v4's waveform head (after Vocos, Siuzdak 2023): the mel decoder's hidden state [B, T, C]
    at 50 Hz -> ConvNeXt blocks -> log-magnitude and phase of ``hop_length / wave_hop`` STFT frames per
    step -> inverse STFT -> waveform [B, 1, T * hop_length] at the codec's rate. Each codec frame owns
    exactly its samples (no resampling, no fractional grid), so windows of an utterance join."""

    def __init__(self, cfg: MelCodecConfig):
        super().__init__()
        h = cfg.wave_channels
        self.n_fft, self.hop = cfg.wave_n_fft, cfg.wave_hop
        self.per_frame = cfg.hop_length // cfg.wave_hop
        self.bins = cfg.wave_n_fft // 2 + 1
        self.inp = nn.Conv1d(cfg.channels, h, cfg.kernel_size, padding=cfg.kernel_size // 2)
        self.blocks = nn.Sequential(*[ConvNeXtBlock(h, cfg.kernel_size, 3.0) for _ in range(cfg.wave_blocks)])
        self.norm = nn.LayerNorm(h)
        self.out = nn.Linear(h, self.per_frame * 2 * self.bins)
        self.register_buffer("window", torch.hann_window(cfg.wave_n_fft), persistent=False)

    def forward(self, hidden: Tensor) -> Tensor:
        b, frames, _ = hidden.shape
        x = self.blocks(self.inp(hidden.transpose(1, 2)))  # [B, H, T]
        y = self.out(self.norm(x.transpose(1, 2)))  # [B, T, k * 2 * F]
        y = y.float().reshape(b, frames * self.per_frame, 2, self.bins)  # [B, N, 2, F], N = k T STFT frames
        mag = torch.exp(y[:, :, 0].clamp(max=6.0))  # exp(6) ~ 400: a bound on the magnitude, as in Vocos
        phase = y[:, :, 1]
        spec = torch.polar(mag, phase).transpose(1, 2)  # [B, F, N] complex
        wav = torch.istft(spec, self.n_fft, self.hop, window=self.window, center=True,
                          length=frames * self.per_frame * self.hop)
        return wav[:, None]  # [B, 1, T * hop_length]


def vocoder_frames(cfg: MelCodecConfig, start_frame: int, frames: int) -> tuple[int, int]:
    """The vocoder frames (first index, count) on the utterance's fixed grid that cover codec frames
    ``start_frame .. start_frame + frames``: vocoder frame j holds samples 256 j .. 256 j + 255 at
    22.05 kHz, codec frame t starts at sample 441 t there. From frame 0: ``mel_frames(frames)``."""
    num, den = cfg.hop_length * cfg.vocoder_sample_rate, cfg.sample_rate * cfg.vocoder_hop  # 441 * 16000 * ..., 256 * 16000
    first = start_frame * num // den
    last = -(-(start_frame + frames) * num // den)
    return first, last - first


def vocoder_dtype(name: str, device: torch.device) -> torch.dtype:
    """The vocoder's precision: ``auto`` = bfloat16 on a CPU with native bf16 arithmetic, else float32."""
    if name == "float32":
        return torch.float32
    if name == "bfloat16":
        return torch.bfloat16
    if name != "auto":
        raise ValueError(f"unknown vocoder_dtype {name!r}; use auto, float32 or bfloat16")
    if device.type != "cpu":
        return torch.float32
    try:
        native = bool(torch.cpu._is_avx512_bf16_supported()) or bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())
    except Exception:  # noqa: BLE001 - private probe; without it, stay exact
        native = False
    return torch.bfloat16 if native else torch.float32


class WaveDecoder(nn.Module):
    """Latent [B, D, T] -> waveform [B, 1, T * 320] at 16 kHz: mel decoder, then HiFi-GAN and
    resampling (``vocoder: hifigan-universal``) or the codec's own istft head (``vocoder: istft``).

    HiFi-GAN is frozen and comes from its own package, so it is held outside this module's
    parameters (never saved with the codec)."""

    grid_aware = True  # forward takes the window's start frame (Codec.decode passes it)

    def __init__(self, cfg: MelCodecConfig):
        super().__init__()
        self.cfg = cfg
        self.mel = MelDecoder(cfg)
        self.wave = ISTFTHead(cfg) if cfg.vocoder == "istft" else None  # codec v4: its own waveform head
        self._vocoder: list[nn.Module] = []

    @property
    def vocoder(self) -> nn.Module:
        if not self._vocoder:
            from engine.melcodec.vocoder import load_vocoder

            self._vocoder.append(load_vocoder(self.cfg.vocoder))
        return self._vocoder[0]

    def vocode(self, mel: Tensor, frames: int, start_frame: int = 0) -> Tensor:
        """Vocoder mel [B, 80, M] (the grid of ``vocoder_frames(start_frame, frames)``) -> [B, 1, frames * 320] at 16 kHz."""
        import soxr

        voc = self.vocoder
        dtype = vocoder_dtype(self.cfg.vocoder_dtype, mel.device)
        param = next(voc.parameters())
        if param.device != mel.device or param.dtype != dtype:
            voc.to(mel.device, dtype)
        wav22 = voc(mel.to(dtype))[:, 0].float().cpu().numpy().astype(np.float64)  # [B, M * 256]
        c = self.cfg
        first, _ = vocoder_frames(c, start_frame, frames)
        cut = start_frame * c.hop_length * c.vocoder_sample_rate // c.sample_rate - first * c.vocoder_hop  # the window's first sample
        wav22 = wav22[:, cut:]
        n = frames * self.cfg.hop_length
        out = np.zeros((wav22.shape[0], n), dtype=np.float32)
        for i, row in enumerate(wav22):
            y = soxr.resample(row, self.cfg.vocoder_sample_rate, self.cfg.sample_rate)[:n]
            out[i, : y.size] = y
        return torch.from_numpy(out).to(mel.device)[:, None]

    def forward(self, latent: Tensor, start_frame: int = 0) -> Tensor:
        """``start_frame``: where the latent's window starts in its utterance (for pieces that join)."""
        if self.wave is not None:  # every codec frame owns its 320 samples: the window's start does not matter
            return self.wave(self.mel.hidden(latent))
        return self.vocode(self.mel(latent, start_frame), latent.shape[-1], start_frame)


class MelCodecModel(nn.Module):
    """The demo codec: ``encoder`` (wav -> latent), ``quantizer`` (8 x 1024 RVQ), ``decoder`` (latent -> wav)."""

    def __init__(self, cfg: MelCodecConfig):
        super().__init__()
        from speechtokenizer.quantization import ResidualVectorQuantizer

        self.cfg = cfg
        self.sample_rate = cfg.sample_rate
        self.downsample_rate = cfg.hop_length
        self.n_q = cfg.n_q
        self.encoder = MelEncoder(cfg)
        self.quantizer = ResidualVectorQuantizer(
            dimension=cfg.dimension, n_q=cfg.n_q, bins=cfg.codebook_size, decay=cfg.rvq_decay,
            kmeans_init=True, kmeans_iters=20, threshold_ema_dead_code=cfg.dead_code_threshold,
        )
        self.decoder = WaveDecoder(cfg)
        from_whisper = cfg.semantic_source == "whisper"
        # v3: RVQ-1 from Whisper's features (the encoder itself is held outside the parameters, as the vocoder)
        self.semantic_adapter = SemanticAdapter(cfg) if from_whisper else None
        self._whisper: list = []
        # v1 / v2: RVQ-1 -> teacher space, for the distillation loss (training only)
        self.semantic_head = None if from_whisper else nn.Linear(cfg.dimension, cfg.semantic_dim)
        # RVQ-1 -> phoneme logits (blank + symbols), one linear layer per frame: training and the probe
        self.phoneme_head = nn.Linear(cfg.dimension, len(cfg.phonemes) + 1) if cfg.phonemes else None

    # ------------------------------------------------------------------ RVQ-1 from Whisper (v3)
    @property
    def whisper(self):
        """Whisper tiny.en's encoder (CTranslate2), loaded on first use with torch's thread count."""
        if not self._whisper:
            from engine.melcodec.whisper import WhisperEncoder

            threads = torch.get_num_threads()
            encoder = None
            if next(self.parameters()).is_cuda:
                try:
                    encoder = WhisperEncoder(threads=threads, device="cuda")
                except (RuntimeError, ValueError) as exc:  # a CTranslate2 build or driver without CUDA
                    log.warning("Whisper tiny.en cannot run on the GPU here (%s); it runs on the CPU", exc)
            self._whisper.append(encoder or WhisperEncoder(threads=threads, device="cpu"))
        return self._whisper[0]

    def whisper_features(self, wav: Tensor, samples: list[int]) -> Tensor:
        """Whisper features of each waveform of ``wav`` [B, 1, S] cut to its ``samples``, each encoded
        on its own (so a waveform's codes never depend on what it is batched with) -> [B, T, 384],
        T = S / 320, zero beyond each waveform's frames."""
        frames = wav.shape[-1] // self.downsample_rate
        out = torch.zeros(wav.shape[0], frames, self.cfg.semantic_dim)
        for i, n in enumerate(samples):
            feats = self.whisper.encode(wav[i, 0, :n].float().cpu().numpy())  # [ceil(n / 320), 384]
            out[i, : feats.shape[0]] = torch.from_numpy(feats[:frames])
        return out.to(wav.device)

    def quantize(self, latent: Tensor, whisper: Tensor | None = None, n_q: int | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
        """The training forward of the RVQ: latent [B, D, T] (and Whisper features [B, T, 384] for v3)
        -> (quantized [B, D, T] of the first ``n_q`` layers, codes [n_q, B, T], commitment loss,
        RVQ-1 [B, D, T], RVQ-1's input [B, D, T] or None for v1 / v2)."""
        n_q = n_q or self.n_q
        if self.semantic_adapter is None:
            quantized, codes, commit, layers = self.quantizer(latent, n_q=n_q, layers=[0])
            return quantized, codes, commit, layers[0], None
        if whisper is None:
            raise ValueError("this codec computes RVQ-1 from Whisper features: pass them (the teacher cache in training)")
        vq = self.quantizer.vq
        semantic_in = self.semantic_adapter(whisper.to(latent.dtype))  # [B, D, T]
        rvq1, code, loss = vq.layers[0](semantic_in)
        quantized, codes, losses = rvq1, [code], [loss]
        residual = latent - rvq1.detach()  # RVQ-2..8: what the mel encoder has beyond RVQ-1
        for layer in vq.layers[1:n_q]:
            q, code, loss = layer(residual)
            residual = residual - q
            quantized = quantized + q
            codes.append(code)
            losses.append(loss)
        return quantized, torch.stack(codes), torch.stack(losses).mean(), rvq1, semantic_in

    @torch.no_grad()
    def encode_codes(self, wav: Tensor, samples: list[int], n_q: int | None = None) -> Tensor:
        """Codes of a zero-padded batch ``wav`` [B, 1, S] (S a multiple of 320; ``samples``: each
        waveform's own length) -> [n_q, B, S / 320]. What ``engine.codec.Codec.encode`` calls."""
        n_q = n_q or self.n_q
        frames = wav.shape[-1] // self.downsample_rate
        latent = self.encoder(wav).float()[..., :frames]  # [B, D, T]
        if self.semantic_adapter is None:
            return self.quantizer.encode(latent, n_q=n_q, st=0)
        vq = self.quantizer.vq
        semantic_in = self.semantic_adapter(self.whisper_features(wav, samples))  # [B, D, T]
        first = vq.layers[0].encode(semantic_in)  # [B, T]
        if n_q == 1:
            return first[None]
        rest = vq.encode(latent - vq.layers[0].decode(first), n_q=n_q, st=1)  # [n_q - 1, B, T]
        return torch.cat([first[None], rest])

    @torch.no_grad()
    def phoneme_logits(self, semantic: Tensor) -> Tensor:
        """CTC logits of the phoneme head from RVQ-1 embeddings [B, D, T] -> [B, T, symbols + 1]."""
        if self.phoneme_head is None:
            raise ModelUnavailableError("this demo codec has no phoneme head (trained without loss.phoneme_ctc)")
        return self.phoneme_head(semantic.transpose(1, 2))

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, folder: str | Path, half: bool = True) -> Path:
        """``config.json`` + ``model.safetensors``: network weights in float16 when ``half``, codebooks float32."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {}
        for key, value in self.state_dict().items():
            if key.rsplit(".", 1)[-1] in _TRAINING_BUFFERS:
                continue
            value = value.detach().cpu()
            if half and value.is_floating_point() and not key.startswith("quantizer."):
                value = value.half()
            state[key] = value.contiguous()
        (folder / CONFIG_FILE).write_text(json.dumps(self.cfg.to_dict(), indent=2))
        save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": "pt", "codec": self.cfg.name})
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path, weights_file: str = WEIGHTS_FILE) -> "MelCodecModel":
        from safetensors.torch import load_file

        folder = Path(folder)
        cfg_path, weights_path = folder / CONFIG_FILE, folder / weights_file
        for path in (cfg_path, weights_path):
            if not path.is_file():
                raise ModelUnavailableError(f"demo codec file {path} is missing; train one with `python -m engine train-codec` "
                                            "or restore assets/models/demo/ from the repository")
        cfg = MelCodecConfig.from_dict(json.loads(cfg_path.read_text()))
        model = cls(cfg)
        state = {k: v.float() for k, v in load_file(str(weights_path)).items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if k.rsplit(".", 1)[-1] not in _TRAINING_BUFFERS]
        if missing or unexpected:
            raise ModelUnavailableError(f"demo codec weights {weights_path} do not match its config: "
                                        f"missing {missing[:3]}, unexpected {unexpected[:3]}")
        return model.eval()


def save_decoder(decoder: WaveDecoder, path: str | Path, codec_name: str, half: bool = True, **metadata: str) -> Path:
    """Write a demo-codec decoder (mel decoder + istft head) on its own, e.g. one adapted to a flow
    model's output (saved in that model's folder); ``metadata``: strings kept in the file's header."""
    from safetensors.torch import save_file

    state = {k: (v.detach().cpu().half() if half and v.is_floating_point() else v.detach().cpu()).contiguous()
             for k, v in decoder.state_dict().items()}
    save_file(state, str(path), metadata={"format": "pt", "codec": codec_name, **metadata})
    return Path(path)


def load_decoder(cfg: MelCodecConfig, codec_name: str, path: str | Path) -> WaveDecoder:
    """A decoder saved by ``save_decoder`` for the codec of ``cfg`` named ``codec_name`` (float32, eval mode)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        saved_for = (f.metadata() or {}).get("codec")
        state = {k: f.get_tensor(k).float() for k in f.keys()}
    if saved_for != codec_name:
        raise ModelUnavailableError(f"{path} is a decoder for the {saved_for!r} codec, not {codec_name!r}: "
                                    "use the codec it was trained with, or set perceptual.flow.adapted_decoder=false")
    decoder = WaveDecoder(cfg)
    own = decoder.state_dict()
    missing, unexpected = [k for k in own if k not in state], [k for k in state if k not in own]
    shapes = [k for k in state if k in own and own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        raise ModelUnavailableError(f"{path} does not match the codec's decoder (missing {missing[:3]}, unexpected {unexpected[:3]}, "
                                    f"other shapes at {shapes[:3]}): retrain it, or set perceptual.flow.adapted_decoder=false")
    decoder.load_state_dict(state)
    return decoder.eval()


@torch.no_grad()
def kmeans(x: Tensor, k: int, iters: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Plain k-means with matrix-product distances: x [N, D] -> (centroids [k, D], counts [k])."""
    n = x.shape[0]
    idx = torch.randperm(n, generator=generator)[:k] if n >= k else torch.randint(0, n, (k,), generator=generator)
    centroids = x[idx].clone()
    counts = torch.zeros(k)
    for _ in range(iters):
        assign = _nearest(x, centroids)
        counts = torch.bincount(assign, minlength=k).float()
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        empty = counts == 0
        centroids = torch.where(empty[:, None], x[torch.randint(0, n, (k,), generator=generator)], sums / counts.clamp(min=1)[:, None])
    return centroids, counts


def _nearest(x: Tensor, centroids: Tensor) -> Tensor:
    """Index of each row's nearest centroid (matrix-product distances): x [N, D], centroids [K, D] -> [N]."""
    dist = x.pow(2).sum(1, keepdim=True) - 2 * x @ centroids.t() + centroids.pow(2).sum(1)[None]  # [N, K]
    return dist.argmin(1)


@torch.no_grad()
def _set_layer(book, centroids: Tensor, size: Tensor) -> None:
    """Give one RVQ layer ``centroids`` [K, D] and the EMA statistics of cluster sizes ``size`` [K]."""
    device = book.embed.device
    book.embed.copy_(centroids.to(device))
    book.cluster_size.copy_(size.to(device))
    book.embed_avg.copy_((centroids * size[:, None]).to(device))
    book.inited.fill_(1.0)


@torch.no_grad()
def set_codebooks(model: MelCodecModel, latents: Tensor, batch_frames: int, reseed: list[bool] | None = None,
                  whisper: Tensor | None = None, iters: int = 10, seed: int = 0) -> None:
    """Give every RVQ layer a codebook and EMA statistics (scaled to a training batch of
    ``batch_frames``) from the encoder's output ``latents`` [N, D] (and, for a v3 codec, the same
    frames' Whisper features ``whisper`` [N, 384], RVQ-1's input): layers with ``reseed[i]`` (default:
    all) by k-means on their input, the others keep their codes and only get their statistics
    rebuilt (a saved model has none; used when training continues with ``init_from``)."""
    gen = torch.Generator().manual_seed(seed)
    latents = latents.float().cpu()
    layers = model.quantizer.vq.layers
    reseed = [True] * len(layers) if reseed is None else reseed
    first = latents
    if model.semantic_adapter is not None:
        if whisper is None:
            raise ValueError("a v3 codec's RVQ-1 reads Whisper features: pass them")
        adapter = model.semantic_adapter
        first = adapter(whisper.float().to(next(adapter.parameters()).device)[None])[0].t().float().cpu()  # [N, D]
    residual = latents
    for i, layer in enumerate(layers):
        book = layer._codebook
        x = first if i == 0 else residual
        if reseed[i]:
            centroids, counts = kmeans(x, book.codebook_size, iters, gen)
        else:
            centroids, counts = book.embed.detach().float().cpu(), None
        nearest = _nearest(x, centroids)
        if counts is None:
            counts = torch.bincount(nearest, minlength=centroids.shape[0]).float()
        _set_layer(book, centroids, counts * (batch_frames / x.shape[0]))  # counts scaled to one training batch
        residual = residual - centroids[nearest]  # RVQ-1 is subtracted from the latent whatever its input
