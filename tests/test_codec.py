import numpy as np
import pytest
import torch

from engine.codec import Codec
from engine.errors import ModelUnavailableError
from tests.audio_helpers import voiced


@pytest.mark.parametrize("n", [1, 319, 320, 321, 160000])
def test_shapes_and_lengths(tiny_codec, n):
    wav = voiced(n / 16000 + 1e-9, seed=n)[:n] if n > 1 else np.array([0.1], dtype=np.float32)
    enc = tiny_codec.encode(wav)
    t = -(-n // 320)
    assert enc.codes.shape == (8, t) and enc.codes.dtype == torch.long
    assert enc.semantic_tokens.shape == (t,)
    for emb in (enc.semantic_emb, enc.perceptual_emb, enc.complete_emb):
        assert emb.shape == (t, tiny_codec.dim) and emb.dtype == torch.float32
    assert tiny_codec.decode(enc.complete_emb).shape == (t * 320,)
    assert tiny_codec.decode_codes(enc.codes).shape == (t * 320,)
    assert tiny_codec.num_frames(n) == t


def test_embedding_identities(tiny_codec):
    enc = tiny_codec.encode(voiced(1.3))
    full = tiny_codec.model.quantizer.decode(enc.codes.unsqueeze(1), st=0)[0].t()  # quantizer's own decode
    torch.testing.assert_close(enc.semantic_emb + enc.perceptual_emb, enc.complete_emb, atol=1e-6, rtol=0)
    torch.testing.assert_close(enc.complete_emb, full, atol=1e-6, rtol=0)
    torch.testing.assert_close(enc.semantic_emb, tiny_codec.semantic_embedding(enc.semantic_tokens), atol=0, rtol=0)
    assert enc.codes[0].tolist() == enc.semantic_tokens.tolist()
    # codes are informative: different sounds give different tokens
    other = tiny_codec.encode(voiced(1.3, f0=300, seed=3))
    assert (other.codes != enc.codes).float().mean() > 0.3


def test_batch_matches_single(tiny_codec):
    a, b = voiced(0.5, seed=1), voiced(1.1, seed=2)
    batch = tiny_codec.encode_batch([a, b])
    assert batch.codes.shape == (2, 8, 55) and batch.lengths.tolist() == [25, 55]
    single = tiny_codec.encode(a)
    # the encoder's bidirectional LSTM sees the zero padding, so a padded item is close to, not
    # identical with, its solo encoding: the coarse RVQ-1 layer agrees, fine layers may drift
    assert (batch.item(0).codes[0, :20] == single.codes[0, :20]).float().mean() >= 0.9
    assert torch.equal(batch.item(1).codes, tiny_codec.encode(b).codes)
    assert tiny_codec.decode(batch.complete_emb).shape == (2, 55 * 320)


def test_public_layout_roundtrip(tiny_codec, tmp_path):
    folder = tiny_codec.save_pretrained(tmp_path / "speechtokenizer_hubert_avg")
    assert (folder / "config.json").is_file() and (folder / "SpeechTokenizer.pt").is_file()
    loaded = Codec.from_pretrained(tmp_path, subfolder="speechtokenizer_hubert_avg", name="tiny")
    wav = voiced(0.8, seed=5)
    assert torch.equal(loaded.encode(wav).codes, tiny_codec.encode(wav).codes)
    # Snake-variant file naming
    tiny_codec.save_pretrained(tmp_path / "speechtokenizer", weights_file="ckpt.dev")
    snake = Codec.from_pretrained(tmp_path / "speechtokenizer", weights_file="ckpt.dev")
    assert torch.equal(snake.encode(wav).codes, tiny_codec.encode(wav).codes)


def test_missing_files_message(tmp_path):
    with pytest.raises(ModelUnavailableError, match=r"missing config.json, SpeechTokenizer.pt"):
        Codec.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(ModelUnavailableError, match=r"hf download fnlp/SpeechTokenizer"):
        Codec.from_pretrained("fnlp/SpeechTokenizer", subfolder="speechtokenizer_hubert_avg")


def test_wrong_weights_refused(tiny_codec, tmp_path):
    folder = tiny_codec.save_pretrained(tmp_path / "c")
    torch.save({"foo": torch.zeros(1)}, folder / "SpeechTokenizer.pt")
    with pytest.raises(ModelUnavailableError, match="do not match"):
        Codec.from_pretrained(folder)


def test_bad_inputs(tiny_codec):
    with pytest.raises(ValueError):
        tiny_codec.encode(np.zeros((2, 100), dtype=np.float32))
    with pytest.raises(ValueError):
        tiny_codec.embed(torch.full((1, 5), 5000))


def test_requantize_keeps_units_and_snaps_to_codes(tiny_codec):
    wav = voiced(0.8, seed=5)
    enc = tiny_codec.encode(wav)
    # the encoder's own latent snaps to the encoder's codes: the same residual quantisation
    with torch.inference_mode():
        latent = tiny_codec.model.encoder(torch.as_tensor(wav)[None, None])[0].t()  # [T, D]
    assert torch.equal(tiny_codec.requantize(latent[: enc.num_frames], enc.semantic_tokens), enc.codes)
    # a perturbed one keeps the given units and lands on valid codes close to it
    noisy = enc.complete_emb + 0.3 * enc.complete_emb.std() * torch.randn(enc.complete_emb.shape, generator=torch.Generator().manual_seed(0))
    other_units = torch.roll(enc.semantic_tokens, 3)
    codes = tiny_codec.requantize(noisy, other_units)
    assert codes.shape == enc.codes.shape and codes[0].tolist() == other_units.tolist()
    assert int(codes.min()) >= 0 and int(codes.max()) < tiny_codec.codebook_size
    snapped = tiny_codec.embed(codes)
    plain = tiny_codec.semantic_embedding(other_units)  # RVQ-1 alone: the residual layers must do better
    assert (snapped - noisy).norm() < (plain - noisy).norm()
    assert tiny_codec.requantize(torch.zeros(0, tiny_codec.dim), torch.zeros(0, dtype=torch.long)).shape == (8, 0)
    with pytest.raises(ValueError):
        tiny_codec.requantize(enc.complete_emb, enc.semantic_tokens[:-1])
