"""Codec v2's phoneme path: espeak-ng targets and their cache, whole-utterance batches, the CTC loss
on RVQ-1, continuing from a saved codec (init_from), and the linear phoneme probe."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from engine.codec import Codec
from engine.melcodec import MelCodecModel
from engine.train import phonemes as ph
from test_melcodec import REPO, TINY, corpus  # noqa: F401  (the module-scoped corpus fixture)

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def test_symbols_greedy_decoding_and_edit_distance():
    assert ph.ipa_symbols("kˈiːp ðə, bˌʌm.") == ["k", "i", "ː", "p", "ð", "ə", "b", "ʌ", "m"]
    inv = ph.build_inventory(["kˈiːp", "ðə"])
    assert inv == sorted(set("kiːpðə"))
    ids = ph.encode_ipa("kˈiːp x", inv)  # x is not in the inventory: skipped
    assert ids == [inv.index(s) + 1 for s in "kiːp"]
    assert ph.ctc_greedy([0, 3, 3, 0, 3, 5, 5, 0]) == [3, 3, 5]  # repeats merge, a blank separates
    assert ph.edit_distance([1, 2, 3], [1, 3]) == 1 and ph.edit_distance([], [4, 4]) == 2


@needs_espeak
def test_phonemes_are_cached_beside_the_corpus(tmp_path, monkeypatch):
    first = ph.ensure_phonemes(tmp_path, {"a": "Keep the company.", "b": "Twenty three dollars."})
    assert ph.ipa_symbols(first["a"])[:2] == ["k", "i"]
    path = ph.phoneme_cache_path(tmp_path)
    assert len(path.read_text().splitlines()) == 2

    def boom(*_a, **_k):
        raise AssertionError("espeak-ng ran again for cached transcripts")

    monkeypatch.setattr("engine.semantic.frontend.TextFrontEnd.convert_many", boom)
    assert ph.ensure_phonemes(tmp_path, {"b": "ignored: cached"}) == {"b": first["b"]}


def _utterance_batch(corpus, cfg):  # noqa: F811
    from engine.train.train_codec import CodecTrainConfig, UtteranceDataset, collate, ensure_teacher, phoneme_targets, read_corpus

    utts = read_corpus(corpus, "train")
    run = CodecTrainConfig(model=dataclasses.replace(cfg))
    targets = phoneme_targets(run, corpus, utts)
    teacher = ensure_teacher(corpus, utts, progress=False)
    data = UtteranceDataset(utts, teacher, run.model, targets, max_frames=10_000)
    return run, data, collate([data[i] for i in range(len(data))])


@needs_espeak
def test_whole_utterance_batches_pad_and_carry_phonemes(corpus):  # noqa: F811
    run, data, batch = _utterance_batch(corpus, TINY)
    assert run.model.phonemes and len(data) == 3
    lengths = batch["lengths"].tolist()
    assert len(set(lengths)) > 1  # whole utterances of different lengths, padded to the longest
    assert batch["wav"].shape[1] == max(lengths) * TINY.hop_length
    assert batch["mask"].sum(1).tolist() == lengths
    assert int(batch["phoneme_lengths"].sum()) == batch["phonemes"].numel()
    assert all(n < t for n, t in zip(batch["phoneme_lengths"].tolist(), lengths))  # CTC needs frames >= symbols


@needs_espeak
def test_ctc_loss_trains_the_phoneme_head_and_the_encoder(corpus):  # noqa: F811
    from engine.train.train_codec import CodecLoss, CodecLossConfig, seed_codebooks, SegmentDataset, ensure_teacher, read_corpus

    run, data, batch = _utterance_batch(corpus, TINY)
    torch.manual_seed(0)
    model = MelCodecModel(run.model).train()
    assert model.phoneme_head.out_features == len(run.model.phonemes) + 1
    utts = read_corpus(corpus, "train")
    seed_codebooks(model, SegmentDataset(utts, ensure_teacher(corpus, utts, progress=False), run.model, 20), batch_frames=60)
    loss_fn = CodecLoss(run.model, CodecLossConfig(mel=0, semantic=0, commit=0, quantizer_dropout=0, phoneme_ctc=1.0))
    loss, logs = loss_fn(model, batch)
    loss.backward()
    assert torch.isfinite(loss) and float(logs["phoneme_ctc"]) > 0
    assert model.phoneme_head.weight.grad.abs().sum() > 0
    assert model.encoder.stem.weight.grad.abs().sum() > 0  # through RVQ-1's straight-through estimator
    model.eval()
    with torch.no_grad():
        _, logs = loss_fn(model, batch)
    assert 0.0 <= logs["phoneme_error"] <= 5.0  # evaluation also reports the greedy phoneme error rate
    # a few steps on this one batch bring the CTC loss down: the head can read phonemes off RVQ-1
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    start = float(loss_fn(model, batch)[0].detach())
    for _ in range(30):
        opt.zero_grad()
        loss_fn(model, batch)[0].backward()
        opt.step()
    assert float(loss_fn(model, batch)[0].detach()) < 0.8 * start


def test_phoneme_ctc_needs_whole_utterances(corpus, tmp_path):  # noqa: F811
    from engine.train.train_codec import CodecTrainConfig, CodecLossConfig, train_codec

    run = CodecTrainConfig(model=TINY, loss=CodecLossConfig(phoneme_ctc=1.0))
    with pytest.raises(ValueError, match="batching: utterances"):
        train_codec(run, corpus, tmp_path / "run", progress=False)


@needs_espeak
def test_continue_from_a_saved_codec_with_a_new_phoneme_head(corpus, tmp_path):  # noqa: F811
    from engine.config import from_dict, read_yaml
    from engine.train.train_codec import CodecTrainConfig, train_codec

    base = from_dict(CodecTrainConfig, read_yaml(REPO / "assets/configs/train/codec_tiny.yaml"))
    train_codec(base, corpus, tmp_path / "v1", progress=False)
    v1 = Codec.from_pretrained(tmp_path / "v1" / "final", weights_file="model.safetensors")
    run = from_dict(CodecTrainConfig, read_yaml(REPO / "assets/configs/train/codec_tiny.yaml"))
    run.batching, run.batch_frames, run.max_frames = "utterances", 2000, 2000
    run.loss.phoneme_ctc = 1.0
    run.init_from = str(tmp_path / "v1" / "final")
    run.train.max_steps = 2
    history = train_codec(run, corpus, tmp_path / "v2", progress=False)
    assert any("phoneme_ctc" in h for h in history)
    saved = json.loads((tmp_path / "v2" / "final" / "config.json").read_text())
    assert saved["phonemes"] == run.model.phonemes and len(saved["phonemes"]) > 5
    v2 = Codec.from_pretrained(tmp_path / "v2" / "final", weights_file="model.safetensors")
    assert v2.model.phoneme_head is not None
    # continued, not restarted: after 2 steps the encoder is still close to v1's (a fresh one would be far)
    w1, w2 = v1.model.encoder.stem.weight, v2.model.encoder.stem.weight
    assert float((w1 - w2).norm() / w1.norm()) < 0.2
    # a different architecture is refused with the reason
    run.model = dataclasses.replace(run.model, channels=run.model.channels * 2)
    with pytest.raises(ValueError, match="architecture differs"):
        train_codec(run, corpus, tmp_path / "v3", progress=False)


def test_codebook_statistics_rebuilt_from_the_codebooks():
    from engine.melcodec.model import set_codebooks

    torch.manual_seed(0)
    model = MelCodecModel(TINY)
    books = [layer._codebook for layer in model.quantizer.vq.layers]
    latents = torch.randn(600, TINY.dimension)
    for b in books:
        b.embed.copy_(torch.randn_like(b.embed))
    before = [b.embed.clone() for b in books]
    set_codebooks(model, latents, batch_frames=300, reseed=[False] * model.n_q)
    assert all(torch.equal(a, b.embed) for a, b in zip(before, books))  # the codes are kept
    first = books[0]
    assert float(first.cluster_size.sum()) == pytest.approx(300.0)  # counts scaled to one batch
    assert torch.allclose(first.embed_avg, first.embed * first.cluster_size[:, None])
    assert all(bool(b.inited) for b in books)


@needs_espeak
def test_phoneme_probe_reports_rvq1_complete_and_head(corpus, tmp_path):  # noqa: F811
    from engine.eval.phoneme_probe import phoneme_probe

    run, _, _ = _utterance_batch(corpus, TINY)
    torch.manual_seed(0)
    model = MelCodecModel(run.model)
    model.save_pretrained(tmp_path / "codec")
    codec = Codec.from_pretrained(tmp_path / "codec", weights_file="model.safetensors")
    report = phoneme_probe(codec, corpus, train_per_voice=3, test_per_voice=3, steps=5)
    assert report.train_items == 3 and report.test_items == 3 and report.symbols == len(run.model.phonemes)
    for value in (report.per_rvq1, report.per_complete, report.per_head):
        assert np.isfinite(value) and value >= 0
    assert "RVQ-1" in report.markdown()


def test_decoder_only_training_keeps_the_codes(corpus, tmp_path):  # noqa: F811
    from engine.config import from_dict, read_yaml
    from engine.train.train_codec import CodecTrainConfig, train_codec

    base = from_dict(CodecTrainConfig, read_yaml(REPO / "assets/configs/train/codec_tiny.yaml"))
    train_codec(base, corpus, tmp_path / "v1", progress=False)
    run = from_dict(CodecTrainConfig, read_yaml(REPO / "assets/configs/train/codec_tiny.yaml"))
    run.trainable, run.init_from, run.train.max_steps = "decoder", str(tmp_path / "v1" / "final"), 3
    run.train.lr = 1e-2  # large steps: a frozen part that moved would show
    train_codec(run, corpus, tmp_path / "dec", progress=False)
    a = Codec.from_pretrained(tmp_path / "v1" / "final", weights_file="model.safetensors")
    b = Codec.from_pretrained(tmp_path / "dec" / "final", weights_file="model.safetensors")
    wav = __import__("soundfile").read(corpus / "slt/slt_0.wav", dtype="float32")[0]
    assert torch.equal(a.encode(wav).codes, b.encode(wav).codes)  # encoder and codebooks untouched
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k].float(), sb[k].float()) for k in sa if not k.startswith("decoder."))
    assert any(not torch.equal(sa[k].float(), sb[k].float()) for k in sa if k.startswith("decoder."))
    with pytest.raises(ValueError, match="init_from"):
        run.init_from = ""
        train_codec(run, corpus, tmp_path / "none", progress=False)


def test_train_codec_cli_decoder_phase(corpus, tmp_path, capsys):  # noqa: F811
    from engine.cli.train_codec import main
    from engine.train.train_codec import CodecTrainConfig, train_codec
    from engine.config import from_dict, read_yaml

    train_codec(from_dict(CodecTrainConfig, read_yaml(REPO / "assets/configs/train/codec_tiny.yaml")), corpus, tmp_path / "v1", progress=False)
    argv = ["--corpus", str(corpus), "--out", str(tmp_path / "dec"), "--config", str(REPO / "assets/configs/train/codec_tiny.yaml"),
            "--train-set", "trainable=decoder", "--train-set", f"init_from={tmp_path / 'v1' / 'final'}", "--max-steps", "2", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "done: step 2, mel L1" in out and "cosine" not in out  # the decoder phase has no semantic loss to report


@needs_espeak
def test_eval_phonemes_cli_writes_the_report(corpus, tmp_path, capsys):  # noqa: F811
    from engine.cli.eval import main

    torch.manual_seed(0)
    MelCodecModel(TINY).save_pretrained(tmp_path / "codec")  # no phoneme head: the probe alone
    argv = ["phonemes", "--profile", "demo", "--set", f"codec.path={tmp_path / 'codec'}", "--set", "codec.name=demo-tiny",
            "--corpus", str(corpus), "--train-per-voice", "2", "--per-voice", "2", "--steps", "3", "--out", str(tmp_path / "rep")]
    assert main(argv) == 0
    report = json.loads((tmp_path / "rep" / "phonemes.json").read_text())
    assert report["train_items"] == 2 and report["test_items"] == 2 and np.isnan(report["per_head"])
    assert "no phoneme head" in capsys.readouterr().out
