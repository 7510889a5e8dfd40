"""Codec v4's istft head (``vocoder: istft``): shapes and frame-local decoding, the multi-scale mel loss,
the ``trainable: wave`` phase reaching only the head, and a codec continued into v4 by ``train_codec``
that keeps its codes and decodes without HiFi-GAN."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import soundfile as sf
import torch

from engine.codec import Codec
from engine.melcodec import MelCodecConfig, MelCodecModel
from test_melcodec import REPO, TINY, corpus, crops_and_model  # noqa: F401  (the module-scoped corpus fixture)

TINY_WAVE = dataclasses.replace(TINY, vocoder="istft", wave_channels=24, wave_blocks=1)


def test_config_checks_the_vocoder_and_its_hop():
    with pytest.raises(ValueError, match="vocoder"):
        MelCodecConfig.from_dict({"vocoder": "wavenet"})
    with pytest.raises(ValueError, match="wave_hop"):
        MelCodecConfig.from_dict({"vocoder": "istft", "wave_hop": 150})
    assert MelCodecConfig.from_dict(TINY_WAVE.to_dict()) == TINY_WAVE


def test_istft_head_shapes_and_frame_local_windows():
    """Every codec frame owns its 320 samples: a window decoded alone equals the whole utterance's
    decoding away from the window's edges (the receptive field), so streamed pieces join."""
    torch.manual_seed(0)
    model = MelCodecModel(TINY_WAVE).eval()
    assert model.decoder.wave is not None
    latent = torch.randn(2, 16, 60)
    with torch.no_grad():
        whole = model.decoder(latent)
        part = model.decoder(latent[..., 20:50], start_frame=20)
    assert whole.shape == (2, 1, 60 * 320) and torch.isfinite(whole).all() and whole.abs().max() > 0
    margin = 13  # frames: 4 convolutions of kernel 7 (decoder and head: 12 frames), plus the STFT's half window
    a = whole[..., (20 + margin) * 320 : (50 - margin) * 320]
    b = part[..., margin * 320 : (30 - margin) * 320]
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(whole[..., 20 * 320 : 21 * 320], part[..., :320], atol=1e-5)  # the edge itself differs


def test_multiscale_mel_loss():
    from engine.train.wave_loss import MultiScaleMelLoss

    loss = MultiScaleMelLoss(16000)
    g = torch.Generator().manual_seed(0)
    t = torch.arange(16000) / 16000
    clean = (0.3 * torch.sin(2 * torch.pi * 220 * t))[None]
    assert float(loss(clean, clean)) == 0.0
    noise = torch.randn(1, 16000, generator=g)
    levels = [float(loss(clean + a * noise, clean)) for a in (0.001, 0.01, 0.1)]
    assert 0 < levels[0] < levels[1] < levels[2]  # the further from the target, the larger
    # the mask: what lies beyond an utterance's end is not scored
    mask = torch.zeros(1, 16000)
    mask[:, :8000] = 1
    tail = clean.clone()
    tail[:, 8000:] = torch.randn(1, 8000, generator=g)
    assert float(loss(tail, clean, mask)) == 0.0 and float(loss(tail, clean)) > 0


def test_wave_phase_trains_only_the_head(corpus):  # noqa: F811
    from engine.train.train_codec import CodecLoss, CodecLossConfig

    model, batch = crops_and_model(corpus, TINY_WAVE)
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("decoder.wave."))
    books = [layer._codebook.embed.clone() for layer in model.quantizer.vq.layers]
    loss, logs = CodecLoss(TINY_WAVE, CodecLossConfig(mel=1, commit=1, quantizer_dropout=0), trainable="wave")(model, batch)
    assert torch.isfinite(loss) and loss > 0 and "wave_l1" in logs and "mel_l1" not in logs and "commit" not in logs
    loss.backward()
    assert model.decoder.wave.out.weight.grad.abs().sum() > 0 and model.decoder.wave.inp.weight.grad.abs().sum() > 0
    assert model.decoder.mel.out.weight.grad is None and model.encoder.stem.weight.grad is None
    assert all(torch.equal(layer._codebook.embed, b) for layer, b in zip(model.quantizer.vq.layers, books))  # no EMA update
    with pytest.raises(ValueError, match="vocoder: istft"):
        CodecLoss(TINY, CodecLossConfig(), trainable="wave")(MelCodecModel(TINY).train(), batch)


def test_train_codec_continues_a_codec_into_v4(corpus, tmp_path, monkeypatch):  # noqa: F811
    from engine.config import from_dict, read_yaml
    from engine.train.train_codec import CodecTrainConfig, train_codec

    base = from_dict(CodecTrainConfig, read_yaml(REPO / "assets/configs/train/codec_tiny.yaml"))
    base.train.max_steps = 2
    train_codec(base, corpus, tmp_path / "v3", progress=False)
    wave = from_dict(CodecTrainConfig, read_yaml(REPO / "assets/configs/train/codec_demo_v4_wave.yaml"))
    wave.model = dataclasses.replace(base.model, vocoder="istft", wave_channels=24, wave_blocks=1)
    wave.init_from, wave.segment_frames, wave.batch_size = str(tmp_path / "v3" / "final"), 20, 3
    wave.train = dataclasses.replace(base.train, max_steps=3)
    history = train_codec(wave, corpus, tmp_path / "v4", progress=False)
    assert any("wave_l1" in h for h in history)
    v3 = Codec.from_pretrained(tmp_path / "v3" / "final", weights_file="model.safetensors")
    v4 = Codec.from_pretrained(tmp_path / "v4" / "final", weights_file="model.safetensors")
    wav = sf.read(corpus / "rms/rms_0.wav", dtype="float32")[0]
    assert torch.equal(v3.encode(wav).codes, v4.encode(wav).codes)  # the code space is v3's
    assert torch.equal(v3.model.decoder.mel.out.weight, v4.model.decoder.mel.out.weight)  # the mel decoder stayed
    hifigan = v3.decode(v3.encode(wav).complete_emb)

    def no_hifigan(*_a, **_k):
        raise AssertionError("an istft codec must not load HiFi-GAN")

    monkeypatch.setattr("engine.melcodec.vocoder.load_vocoder", no_hifigan)
    out = v4.decode(v4.encode(wav).complete_emb)
    frames = -(-wav.size // 320)
    assert out.shape == (frames * 320,) and torch.isfinite(out).all() and out.abs().max() > 0
    assert not np.allclose(out.numpy(), hifigan.numpy(), atol=1e-3)
