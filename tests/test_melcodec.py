"""The demo codec (engine.melcodec): features, model, Codec interface, teacher cache, training losses,
resume, evaluation helpers, the CLI, and the shipped model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from engine.codec import Codec
from engine.melcodec import MelCodecConfig, MelCodecModel
from engine.melcodec.features import LogMel, mel_filterbank
from speech_helpers import SENTENCES, flite

TINY = MelCodecConfig(name="demo-tiny", channels=32, enc_blocks=1, dec_blocks=1, dimension=16, codebook_size=16)
REPO = Path(__file__).resolve().parent.parent


def _corpus(tmp_path: Path) -> Path:
    """A 6-utterance corpus in the `demo corpus` layout: 3 flite sentences x 2 voices (one held out)."""
    root = tmp_path / "corpus"
    rows = []
    for voice, split in (("slt", "train"), ("rms", "test")):
        (root / voice).mkdir(parents=True)
        for k, text in enumerate(SENTENCES):
            raw = flite(text, voice, tmp_path / f"raw_{voice}{k}.wav")
            wav, sr = sf.read(raw, dtype="float32")
            import soxr

            wav = soxr.resample(wav, sr, 16000).astype(np.float32)
            rel = f"{voice}/{voice}_{k}.wav"
            sf.write(root / rel, wav, 16000)
            rows.append({"id": f"{voice}_{k}", "path": rel, "voice": f"flite_{voice}", "text": text, "sentence_id": f"s{k}",
                         "duration": wav.size / 16000, "split": split, "heldout_voice": split == "test", "heldout_sentence": False})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return _corpus(tmp_path_factory.mktemp("melcodec"))


def test_filterbank_matches_librosa():
    librosa = pytest.importorskip("librosa")
    for sr, n_fft in ((22050, 1024), (16000, 640)):
        ours = mel_filterbank(sr, n_fft, 80, 0.0, 8000.0)
        ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=80, fmin=0.0, fmax=8000.0)
        assert np.abs(ours - ref).max() < 1e-6


def test_logmel_shape_and_tone_peak():
    mel = LogMel(16000, 640, 160, 80, 8000.0)
    t = torch.arange(16000) / 16000
    out = mel(torch.sin(2 * torch.pi * 1000 * t)[None])  # [1, 80, 101]
    assert out.shape == (1, 80, 101)
    centre = mel_filterbank(16000, 640, 80, 0, 8000).argmax(1) * 16000 / 640
    assert abs(centre[int(out[0, :, 50].argmax())] - 1000) < 150  # the 1 kHz band is the loudest


def test_model_shapes_and_mel_frames():
    torch.manual_seed(0)
    model = MelCodecModel(TINY)
    wav = torch.randn(2, 1, 37 * 320) * 0.1
    latent = model.encoder(wav)
    assert latent.shape == (2, 16, 37)
    assert model.decoder.mel(latent).shape == (2, 80, TINY.mel_frames(37))
    assert TINY.mel_frames(100) == 173  # ceil(100 * 320 * 22050 / 16000 / 256)


def test_windows_decode_on_the_utterance_grid():
    """The mel is interpolated to one fixed vocoder grid: a window of an utterance decoded with its
    start frame gives the one-pass waveform past its edges (so streamed pieces join exactly), which
    the window decoded as if it started the utterance does not."""
    from engine.melcodec.model import vocoder_frames

    assert vocoder_frames(TINY, 0, 100) == (0, TINY.mel_frames(100))
    assert vocoder_frames(TINY, 37, 10) == (37 * 441 // 256, -(-47 * 441 // 256) - 37 * 441 // 256)
    torch.manual_seed(0)
    model = MelCodecModel(TINY).eval()
    latent = torch.randn(1, 16, 120)
    with torch.no_grad():
        whole = model.decoder(latent)[0, 0]
        start, overlap = 53, 18
        window = model.decoder(latent[..., start - overlap :], start_frame=start - overlap)[0, 0]
        naive = model.decoder(latent[..., start - overlap :])[0, 0]
    assert window.shape == naive.shape == ((120 - start + overlap) * 320,)
    tail, part = whole[start * 320 :], window[overlap * 320 :]
    assert (part - tail).norm() / tail.norm() < 1e-3
    assert (naive[overlap * 320 :] - tail).norm() / tail.norm() > 1e-2  # another grid: a different waveform


def test_codec_interface_round_trip(tmp_path):
    torch.manual_seed(0)
    model = MelCodecModel(TINY)
    from engine.melcodec.model import set_codebooks

    set_codebooks(model, torch.randn(400, 16), batch_frames=400)
    codec = Codec(model, name="demo-tiny")
    folder = codec.save_pretrained(tmp_path / "codec")
    assert (folder / "model.safetensors").is_file() and json.loads((folder / "config.json").read_text())["kind"] == "mel"
    loaded = Codec.from_pretrained(folder, weights_file="model.safetensors")
    assert loaded.name == "demo-tiny" and loaded.n_q == 8 and loaded.dim == 16
    wav = (np.random.default_rng(0).standard_normal(16000 + 100) * 0.1).astype(np.float32)
    enc = loaded.encode(wav)
    assert enc.codes.shape == (8, 51)
    assert torch.allclose(enc.complete_emb, enc.semantic_emb + enc.perceptual_emb, atol=1e-5)
    # saved in float16 (codebooks float32): the loaded codec encodes like the original
    assert (codec.encode(wav).codes == enc.codes).float().mean() > 0.9
    out = loaded.decode(enc.complete_emb)
    assert out.shape == (51 * 320,) and torch.isfinite(out).all()


def test_teacher_features_are_50hz_and_cached(corpus, tmp_path):
    pytest.importorskip("ctranslate2")
    from engine.melcodec.whisper import WhisperEncoder
    from engine.train.teacher import build_teacher_cache

    teacher = WhisperEncoder(threads=1)
    calls = []

    class Counting:
        def encode_batch(self, wavs):
            calls.append(len(wavs))
            return teacher.encode_batch(wavs)

    wavs = {p.stem: sf.read(p, dtype="float32")[0] for p in sorted(corpus.glob("*/*.wav"))}
    items = [(k, (lambda w=w: w)) for k, w in wavs.items()]
    cache = build_teacher_cache(items, tmp_path / "t", teacher=Counting(), part_size=4, progress=False)
    assert len(cache) == len(wavs) and sum(calls) == len(wavs)
    for key, wav in wavs.items():
        feats = cache.features(key)
        assert feats.shape == (-(-wav.size // 320), 384) and feats.dtype == np.float16
    # content, not noise: the same sentence in two voices is closer than two different sentences
    a, b, c = (np.asarray(cache.features(k), dtype=np.float32).mean(0) for k in ("slt_0", "rms_0", "slt_1"))
    cos = lambda x, y: float(x @ y / np.linalg.norm(x) / np.linalg.norm(y))  # noqa: E731
    assert cos(a, b) > 0.5
    again = build_teacher_cache(items, tmp_path / "t", teacher=Counting(), part_size=4, progress=False)
    assert sum(calls) == len(wavs) and len(again) == len(wavs)  # nothing recomputed


def crops_and_model(corpus: Path, cfg: MelCodecConfig) -> tuple[MelCodecModel, dict]:
    """A codec of ``cfg`` in training mode with k-means-seeded codebooks, and one batch of 20-frame crops
    of the corpus's training split."""
    from engine.train.train_codec import SegmentDataset, collate, ensure_teacher, read_corpus, seed_codebooks

    utts = read_corpus(corpus, "train")
    data = SegmentDataset(utts, ensure_teacher(corpus, utts, progress=False), cfg, segment_frames=20)
    torch.manual_seed(0)
    model = MelCodecModel(cfg).train()
    seed_codebooks(model, data, batch_frames=60)
    return model, collate([data[i] for i in range(len(data))])


def test_every_loss_trains_its_part(corpus):
    from engine.train.train_codec import CodecLoss, CodecLossConfig

    model, batch = crops_and_model(corpus, TINY)
    for weights, part in ((CodecLossConfig(mel=1, semantic=0, commit=0, quantizer_dropout=0), model.decoder.mel.out.weight),
                          (CodecLossConfig(mel=0, semantic=1, commit=0, quantizer_dropout=0), model.semantic_head.weight),
                          (CodecLossConfig(mel=0, semantic=0, commit=1, quantizer_dropout=0), model.encoder.out.weight)):
        model.zero_grad()
        loss, logs = CodecLoss(TINY, weights)(model, batch)
        assert torch.isfinite(loss) and loss > 0
        loss.backward()
        assert part.grad is not None and part.grad.abs().sum() > 0
        assert model.encoder.stem.weight.grad.abs().sum() > 0  # every loss reaches the encoder
    assert set(logs) >= {"mel_l1", "semantic_cos", "commit", "n_q"}
    dropped = CodecLoss(TINY, CodecLossConfig(quantizer_dropout=1.0), seed=3)
    assert {int(dropped(model, batch)[1]["n_q"]) for _ in range(8)} != {8}
    alone = CodecLoss(TINY, CodecLossConfig(quantizer_dropout=1.0, rvq1_share=1.0))
    assert {int(alone(model, batch)[1]["n_q"]) for _ in range(4)} == {1}


def test_train_resume_and_load(corpus, tmp_path):
    from engine.config import from_dict, read_yaml
    from engine.train.train_codec import CodecTrainConfig, train_codec

    run = from_dict(CodecTrainConfig, read_yaml(REPO / "assets/configs/train/codec_tiny.yaml"))
    out = tmp_path / "run"
    first = train_codec(run, corpus, out, progress=False)
    assert [h["step"] for h in first if "mel_l1" in h][-1] == 4
    run.train.max_steps = 6
    second = train_codec(run, corpus, out, resume=True, progress=False)
    steps = [h["step"] for h in second if "mel_l1" in h]
    assert steps[0] == 5 and steps[-1] == 6  # continued, not restarted
    codec = Codec.from_pretrained(out / "final", weights_file="model.safetensors")
    assert codec.name == "demo-tiny"
    wav = sf.read(corpus / "slt/slt_0.wav", dtype="float32")[0]
    assert codec.encode(wav).codes.max() < 16


def test_nearest_centroid_accuracy():
    from engine.eval.codec_eval import nearest_centroid_accuracy

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 8)) * 5
    x = np.concatenate([c + rng.standard_normal((6, 8)) for c in centres])
    labels = [str(i) for i in range(3) for _ in range(6)]
    assert nearest_centroid_accuracy(x, labels) == 1.0
    assert nearest_centroid_accuracy(rng.standard_normal((18, 8)), labels) < 0.8


def test_codec_cli_layers(corpus, tmp_path):
    from engine.cli.codec import main

    torch.manual_seed(0)
    model = MelCodecModel(TINY)
    from engine.melcodec.model import set_codebooks

    set_codebooks(model, torch.randn(400, 16), batch_frames=400)
    folder = model.save_pretrained(tmp_path / "codec")
    src = corpus / "slt/slt_0.wav"
    outs = {}
    for layers in (1, 8):
        out = tmp_path / f"o{layers}.wav"
        assert main(["--profile", "demo", "--set", f"codec.path={folder}", "--input", str(src), "--out", str(out),
                     "--layers", str(layers)]) == 0
        outs[layers], sr = sf.read(out, dtype="float32")
        assert sr == 16000 and abs(outs[layers].size - sf.info(src).frames) < 320
    assert not np.allclose(outs[1], outs[8])


def test_shipped_demo_codec_loads_and_speaks():
    from engine.config import load_config

    cfg = load_config("demo").codec
    codec = Codec.from_config(cfg, device="cpu")
    assert codec.name == "demo-v3" and codec.n_q == 8 and codec.codebook_size == 1024
    assert codec.model.semantic_adapter is not None  # RVQ-1 from Whisper tiny.en's encoder
    assert codec.model.decoder.wave is not None  # v4: its own istft head, no HiFi-GAN
    assert codec.model.phoneme_head is not None and len(codec.model.cfg.phonemes) == codec.model.phoneme_head.out_features - 1
    size = sum(p.stat().st_size for p in (REPO / "assets/models/demo/codec").iterdir())
    assert size < 40e6
    t = np.arange(16000) / 16000
    wav = (0.3 * np.sin(2 * np.pi * 150 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    enc = codec.encode(wav)
    out = codec.decode(enc.complete_emb)
    assert out.shape == (50 * 320,) and torch.isfinite(out).all() and out.abs().max() > 1e-3


def test_vocoder_precision_choice():
    from engine.melcodec.model import vocoder_dtype

    assert vocoder_dtype("float32", torch.device("cpu")) == torch.float32
    assert vocoder_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    assert vocoder_dtype("auto", torch.device("cuda")) == torch.float32
    assert vocoder_dtype("auto", torch.device("cpu")) in (torch.float32, torch.bfloat16)
    with pytest.raises(ValueError, match="vocoder_dtype"):
        vocoder_dtype("fp8", torch.device("cpu"))


def test_bench_codec_prints_the_speed(tmp_path):
    import subprocess
    import sys

    torch.manual_seed(0)
    model = MelCodecModel(TINY)
    from engine.melcodec.model import set_codebooks

    set_codebooks(model, torch.randn(400, 16), batch_frames=400)
    folder = model.save_pretrained(tmp_path / "codec")
    run = subprocess.run([sys.executable, "-m", "engine", "bench", "codec", "--profile", "demo", "--set", f"codec.path={folder}",
                          "--seconds", "2", "--repeats", "1", "--threads", "1"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert "2.0 s of audio" in run.stdout and "1 torch threads" in run.stdout
    last = run.stdout.strip().splitlines()[-1]
    assert last.startswith("encode + decode: ") and float(last.split()[3].rstrip("x")) > 0


def test_nearest_centroid_leaves_the_whole_utterance_out():
    from engine.eval.codec_eval import nearest_centroid_accuracy, segment_pool

    assert segment_pool(np.ones((120, 4)), 50).shape == (2, 4) and segment_pool(np.ones((10, 4)), 50).shape == (1, 4)
    # each "utterance" is a tight cluster of its own; voices share nothing else: with the segments
    # of an utterance vouching for each other it looks perfect, leaving the utterance out it does not
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.standard_normal(8) * 5 + rng.standard_normal((3, 8)) * 0.1 for _ in range(6)])
    labels = [v for v in "aabbcc" for _ in range(3)]
    groups = [str(u) for u in range(6) for _ in range(3)]
    assert nearest_centroid_accuracy(x, labels) == 1.0
    assert nearest_centroid_accuracy(x, labels, groups) < 0.7
