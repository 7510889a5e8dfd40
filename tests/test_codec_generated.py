"""The demo codec's decoder adapted to a flow model's output (``codec_decoder.safetensors`` in the
flow model's folder).

``trainable: generator`` trains the mel decoder and the istft head together; with ``adapt`` a run
exports only that decoder, for the folder of the flow model whose outputs it learnt. The flow model
loads it with itself, and the chain decodes the flow model's output with it (not SoundStorm's codes,
nor a requantised output); resynthesis keeps the codec's own decoder."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from engine.codec import Codec
from engine.errors import ModelUnavailableError
from engine.melcodec import MelCodecModel
from engine.melcodec.model import WaveDecoder, save_decoder
from engine.perceptual.flow_model import ADAPTED_DECODER_FILE, FlowModel, FlowModelConfig
from test_melcodec import TINY, corpus, crops_and_model  # noqa: F401  (the module-scoped corpus fixture)

TINY_WAVE = dataclasses.replace(TINY, vocoder="istft", wave_channels=24, wave_blocks=1)


def _codec(folder) -> Codec:
    torch.manual_seed(0)
    MelCodecModel(TINY_WAVE).save_pretrained(folder)
    return Codec.from_pretrained(folder, weights_file="model.safetensors")


def _flow(folder, codec: Codec, decoder: bool = True) -> None:
    torch.manual_seed(2)
    FlowModel(FlowModelConfig.preset("tiny", feature_dim=TINY_WAVE.dimension, codec=codec.name)).save_pretrained(folder)
    if decoder:
        torch.manual_seed(1)
        save_decoder(WaveDecoder(TINY_WAVE), folder / ADAPTED_DECODER_FILE, codec.name)


def test_codec_decodes_with_a_decoder_loaded_on_its_own(tmp_path):
    codec = _codec(tmp_path / "codec")
    torch.manual_seed(1)
    save_decoder(WaveDecoder(TINY_WAVE), tmp_path / "dec.safetensors", codec.name)
    decoder = codec.load_decoder(tmp_path / "dec.safetensors")
    emb = torch.randn(30, TINY_WAVE.dimension)
    own, adapted = codec.decode(emb), codec.decode(emb, decoder=decoder)
    assert own.shape == adapted.shape == (30 * 320,) and torch.isfinite(adapted).all()
    assert not torch.allclose(own, adapted, atol=1e-4)  # another decoder
    torch.testing.assert_close(codec.decode(emb, decoder=None), own)
    # a decoder of another codec or another architecture is refused with what to do
    save_decoder(WaveDecoder(TINY_WAVE), tmp_path / "other.safetensors", "demo-v2")
    with pytest.raises(ModelUnavailableError, match="'demo-v2' codec"):
        codec.load_decoder(tmp_path / "other.safetensors")
    save_decoder(WaveDecoder(dataclasses.replace(TINY_WAVE, wave_channels=32)), tmp_path / "wide.safetensors", codec.name)
    with pytest.raises(ModelUnavailableError, match="adapted_decoder=false"):
        codec.load_decoder(tmp_path / "wide.safetensors")
    with pytest.raises(ModelUnavailableError, match="only the demo codec"):
        Codec.tiny().load_decoder(tmp_path / "dec.safetensors")


def test_generator_phase_trains_mel_decoder_and_head_only(corpus):  # noqa: F811
    from engine.train.train_codec import CodecLoss, CodecLossConfig

    model, batch = crops_and_model(corpus, TINY_WAVE)
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(("decoder.mel.", "decoder.wave.")))
    books = [layer._codebook.embed.clone() for layer in model.quantizer.vq.layers]
    loss, logs = CodecLoss(TINY_WAVE, CodecLossConfig(mel=1, commit=1, quantizer_dropout=0), trainable="generator")(model, batch)
    assert torch.isfinite(loss) and loss > 0 and "wave_l1" in logs and "commit" not in logs
    loss.backward()
    assert model.decoder.wave.out.weight.grad.abs().sum() > 0
    assert model.decoder.mel.inp.weight.grad.abs().sum() > 0  # the gradient reaches the mel decoder
    assert model.encoder.stem.weight.grad is None
    assert all(torch.equal(layer._codebook.embed, b) for layer, b in zip(model.quantizer.vq.layers, books))  # no EMA update
    with pytest.raises(ValueError, match="vocoder: istft"):
        CodecLoss(TINY, CodecLossConfig(), trainable="generator")


def test_train_codec_exports_only_the_adapted_decoder(corpus, tmp_path):  # noqa: F811
    from engine.train.train_codec import train_codec
    from test_codec_adapt import adapt_run

    codec, run = adapt_run(corpus, tmp_path, TINY_WAVE, "generator")
    history = train_codec(run, corpus, tmp_path / "run", progress=False)
    assert [h["given_items"] for h in history if "given_items" in h] == [1.0, 1.0] and any("wave_l1" in h for h in history)
    final = tmp_path / "run" / "final"
    assert ADAPTED_DECODER_FILE in {p.name for p in final.iterdir()} and not (final / "model.safetensors").exists()  # no second codec
    adapted = codec.load_decoder(final / ADAPTED_DECODER_FILE)
    own = codec.model.decoder
    assert not torch.equal(adapted.wave.out.weight, own.wave.out.weight)  # the head learnt ...
    assert not torch.equal(adapted.mel.inp.weight, own.mel.inp.weight)  # ... and so did the mel decoder
    with pytest.raises(ValueError, match="trainable: decoder, wave or generator"):
        train_codec(dataclasses.replace(run, trainable="all"), corpus, tmp_path / "bad", progress=False)


def test_the_chain_decodes_flow_outputs_with_the_adapted_decoder(tmp_path, monkeypatch):
    """The flow model's folder brings its decoder; UtteranceSynthesizer, decode_in_pieces and one_pass
    decode with it, and with the codec's own once the output is requantised or the setting is off."""
    import numpy as np

    from engine.perceptual.base import FlowPerceptual, Prompt
    from engine.perceptual.config import FlowConfig
    from engine.perceptual.streaming import StreamSettings, UtteranceSynthesizer, decode_in_pieces, one_pass
    from tests.audio_helpers import voiced

    codec = _codec(tmp_path / "codec")
    _flow(tmp_path / "flow", codec)
    _flow(tmp_path / "plain", codec, decoder=False)
    used: list[object] = []
    decode = codec.decode

    def spy(emb, start_frame=0, decoder=None):
        used.append(decoder)
        return decode(emb, start_frame, decoder)

    monkeypatch.setattr(codec, "decode", spy)
    prompt = Prompt.from_codes(codec.encode(voiced(0.4, seed=1)).codes, codec)
    units = codec.encode(voiced(1.2, seed=2)).semantic_tokens.tolist()
    settings = StreamSettings(context_frames=20, overlap_frames=4, holdback_frames=2, lookahead_frames=3)
    cases = ((FlowConfig(path=str(tmp_path / "flow"), compile="off", steps=2), True),
             (FlowConfig(path=str(tmp_path / "flow"), compile="off", steps=2, requantize=True), False),
             (FlowConfig(path=str(tmp_path / "flow"), compile="off", steps=2, adapted_decoder=False), False),
             (FlowConfig(path=str(tmp_path / "plain"), compile="off", steps=2), False))
    outputs = []
    for cfg, adapted in cases:
        flow = FlowPerceptual(cfg, codec, torch.device("cpu"))
        assert (flow.output_decoder() is not None) is adapted
        used.clear()
        syn = UtteranceSynthesizer(flow, codec, prompt, settings, seed=0)
        pieces = [syn.push(units[:30]), syn.push(units[30:]), syn.finish()]
        wav, complete = one_pass(flow, codec, prompt, units, seed=0)
        streamed = np.concatenate(list(decode_in_pieces(codec, complete, 10, settings, decoder=flow.output_decoder())))
        assert sum(p.size for p in pieces) == wav.size == streamed.size == len(units) * 320
        assert len(used) >= 4 and all((d is not None) is adapted for d in used)
        outputs.append(wav)
    assert not np.allclose(outputs[0], outputs[2], atol=1e-4)  # same flow output, another decoder
