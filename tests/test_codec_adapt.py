"""Decoder adaptation: the codec's decoder trained on a flow model's output (engine.train.decoder_inputs).

The loss decodes the share of items it is asked to from the given output, validation scores both
inputs, and a whole run through ``train_codec`` builds the flow outputs (prompts from another
utterance of the same voice, frame-aligned with the utterance), trains only the decoder and leaves
the codes exactly as they were."""

from __future__ import annotations

import dataclasses

import pytest
import soundfile as sf
import torch

from engine.codec import Codec
from engine.melcodec import MelCodecModel
from test_melcodec import TINY, corpus  # noqa: F401  (the module-scoped corpus fixture)


def _batch(corpus, given: bool = True):  # noqa: F811
    from engine.train.train_codec import SegmentDataset, collate, ensure_teacher, read_corpus

    utts = read_corpus(corpus, "train")
    teacher = ensure_teacher(corpus, utts, progress=False)
    batch = collate([SegmentDataset(utts, teacher, TINY, 20, random_crop=False)[i] for i in range(len(utts))])
    if given:
        batch["given"] = torch.randn(batch["mask"].shape[0], 20, TINY.dimension)
    return batch


def test_adapt_loss_decodes_the_share_it_is_asked_to(corpus):  # noqa: F811
    from engine.train.train_codec import CodecLoss, CodecLossConfig

    torch.manual_seed(0)
    model = MelCodecModel(TINY).train()
    batch = _batch(corpus)
    weights = CodecLossConfig(mel=1.0, commit=0.0, quantizer_dropout=0.0)
    model.eval()  # no codebook updates while the reference is computed
    with torch.no_grad():
        latent = model.encoder(batch["wav"][:, None])
        quantized = model.quantize(latent, batch["teacher"])[0]
    ref = CodecLoss(TINY, weights, trainable="decoder")
    from_given = ref.mel_loss(model, batch["given"].transpose(1, 2), batch).detach()
    own = ref.mel_loss(model, quantized, batch).detach()
    assert not torch.allclose(from_given, own)
    model.train()
    for share, expected in ((1.0, from_given), (0.0, own)):
        loss, logs = CodecLoss(TINY, weights, trainable="decoder", given_share=share)(model, batch)
        assert torch.allclose(loss, expected, atol=1e-5) and logs["given_items"] == share
    loss.backward()  # only the decoder learns
    assert model.decoder.mel.out.weight.grad.abs().sum() > 0 and model.encoder.stem.weight.grad is None
    model.eval()
    loss, logs = CodecLoss(TINY, weights, trainable="decoder", given_share=0.25)(model, batch)
    assert isinstance(logs["mel_l1_given"], float) and isinstance(logs["mel_l1"], float)  # validation metrics
    assert logs["mel_l1_given"] == pytest.approx(float(from_given), rel=1e-4) and logs["mel_l1"] == pytest.approx(float(own), rel=1e-4)
    assert float(loss.detach()) == pytest.approx(0.75 * float(own) + 0.25 * float(from_given), rel=1e-4)
    # without flow outputs the decoder phase is unchanged
    loss, logs = CodecLoss(TINY, weights, trainable="decoder", given_share=0.5)(model, _batch(corpus, given=False))
    assert "mel_l1_given" not in logs and float(loss.detach()) == pytest.approx(float(own), rel=1e-4)


def adapt_run(corpus, tmp_path, model_cfg, trainable: str):  # noqa: F811
    """A 2-step decoder-adaptation run of ``trainable`` on the corpus: a seeded codec of ``model_cfg`` saved in
    tmp_path/codec, its codes of the training split, a tiny flow model in tmp_path/flow, and the run's config.
    Returns (codec, run config)."""
    from engine.perceptual.flow_model import FlowModel, FlowModelConfig
    from engine.train.codes_data import ShardWriter
    from engine.train.decoder_inputs import AdaptConfig
    from engine.train.train_codec import CodecTrainConfig, read_corpus
    from engine.train.trainer import TrainConfig

    torch.manual_seed(0)
    MelCodecModel(model_cfg).save_pretrained(tmp_path / "codec")
    codec = Codec.from_pretrained(tmp_path / "codec", weights_file="model.safetensors")
    with ShardWriter(tmp_path / "codes", codec_name=codec.name) as writer:
        for u in read_corpus(corpus, "train"):
            writer.add(u.id, codec.encode(sf.read(u.path, dtype="float32")[0]).codes, text=u.text, speaker=u.id.rsplit("_", 1)[0])
    FlowModel(FlowModelConfig.preset("tiny", feature_dim=model_cfg.dimension, codec=codec.name)).save_pretrained(tmp_path / "flow")
    run = CodecTrainConfig(model=dataclasses.replace(model_cfg), trainable=trainable, init_from=str(tmp_path / "codec"),
                           segment_frames=20, batch_size=2, valid_fraction=0.0,
                           train=TrainConfig(max_steps=2, lr=1e-3, warmup_steps=0, eval_every=0, save_every=0, log_every=1, ema_decay=0.0))
    run.adapt = AdaptConfig(codes=str(tmp_path / "codes"), profile="demo", share=1.0, fraction=1.0, prompt_seconds=0.2,
                            overrides=[f"codec.path={tmp_path / 'codec'}", f"codec.name={codec.name}",
                                       f"perceptual.flow.path={tmp_path / 'flow'}", "perceptual.flow.requantize=false"])
    return codec, run


def test_train_codec_adapts_the_decoder_to_flow_outputs(corpus, tmp_path):  # noqa: F811
    from engine.train.teacher import TeacherCache
    from engine.train.train_codec import adapt_utterances, read_corpus, select_utterances, train_codec

    codec, run = adapt_run(corpus, tmp_path, TINY, "decoder")
    utts = read_corpus(corpus, "train")
    history = train_codec(run, corpus, tmp_path / "run", progress=False)
    assert [h["given_items"] for h in history if "given_items" in h] == [1.0, 1.0]
    cache = TeacherCache.open(tmp_path / "run" / "decoder_inputs")
    train, valid = select_utterances(run, corpus)
    assert sorted(cache.index) == sorted(u.id for u in adapt_utterances(run, train, valid)) and len(cache) == len(utts)
    for u in utts:  # one complete embedding per frame of the utterance
        assert cache.features(u.id).shape == (u.frames, TINY.dimension)
    adapted = Codec.from_pretrained(tmp_path / "run" / "final", weights_file="model.safetensors")
    assert not torch.equal(adapted.model.decoder.mel.out.weight, codec.model.decoder.mel.out.weight)  # the decoder learnt
    wav = sf.read(utts[0].path, dtype="float32")[0]
    assert torch.equal(adapted.encode(wav).codes, codec.encode(wav).codes)  # the codes did not change
    with pytest.raises(ValueError, match="trainable: decoder"):
        train_codec(dataclasses.replace(run, trainable="all"), corpus, tmp_path / "bad", progress=False)
