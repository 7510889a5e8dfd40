"""Voice enrollment (engine/perceptual/enroll.py): the flow model fine-tuned on a voice prompt."""

from __future__ import annotations

import pytest
import torch

from engine.perceptual.base import FlowPerceptual, Prompt
from engine.perceptual.config import FlowConfig
from engine.perceptual.enroll import MIN_FRAMES, EnrollSettings, enroll
from engine.perceptual.flow_model import FlowModel, FlowModelConfig
from tests.audio_helpers import voiced


def _model(seed: int = 0) -> FlowModel:
    torch.manual_seed(seed)
    return FlowModel(FlowModelConfig.preset("tiny", feature_dim=16, codec="test", chain="implicit")).eval()


def _prompt(frames: int = 60, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    semantic = torch.randn(frames, 16, generator=g)
    return semantic + 0.5 * torch.randn(frames, 16, generator=g), semantic


def _prompt_loss(model: FlowModel, complete: torch.Tensor, semantic: torch.Tensor) -> float:
    """The training loss on the prompt, averaged over fixed draws (prefixes and noise)."""
    b = 16
    with torch.no_grad():
        loss, _ = model.loss(complete[None].expand(b, -1, -1), semantic[None].expand(b, -1, -1),
                             torch.full((b,), complete.shape[0]), torch.Generator().manual_seed(123))
    return float(loss)


def test_enrollment_fits_the_prompt_in_a_copy_and_leaves_the_model_alone():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    complete, semantic = _prompt()
    tuned = enroll(model, complete, semantic, EnrollSettings(steps=30, lr=3e-3, batch=4))
    assert tuned is not model and not tuned.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # the shared model is untouched
    assert _prompt_loss(tuned, complete, semantic) < 0.8 * _prompt_loss(model, complete, semantic)
    again = enroll(model, complete, semantic, EnrollSettings(steps=30, lr=3e-3, batch=4))
    for (k, a), b in zip(tuned.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k  # seeded: the same voice enrolls the same way
    assert all(not p.requires_grad for p in tuned.parameters())


def test_vectors_or_attention_only_enrollment_keeps_the_rest():
    model = _model()
    complete, semantic = _prompt()
    tuned = enroll(model, complete, semantic, EnrollSettings(steps=5, lr=1e-2, batch=2, params="vectors"))
    changed = {n for (n, a), b in zip(model.named_parameters(), tuned.parameters()) if not torch.equal(a, b)}
    assert changed and all(dict(model.named_parameters())[n].dim() == 1 for n in changed)
    tuned = enroll(model, complete, semantic, EnrollSettings(steps=5, lr=1e-2, batch=2, params="attention"))
    changed = {n for (n, a), b in zip(model.named_parameters(), tuned.parameters()) if not torch.equal(a, b)}
    assert changed and all(".attn." in n for n in changed) and any(p.dim() == 2 for n, p in model.named_parameters() if n in changed)


def test_nothing_to_enroll_returns_the_model_and_bad_settings_are_refused():
    model = _model()
    complete, semantic = _prompt()
    assert enroll(model, complete, semantic, EnrollSettings(steps=0)) is model
    short_c, short_s = _prompt(MIN_FRAMES - 1)
    assert enroll(model, short_c, short_s, EnrollSettings(steps=3)) is model
    with pytest.raises(ValueError, match="vectors"):
        enroll(model, complete, semantic, EnrollSettings(steps=3, params="some"))
    with pytest.raises(ValueError, match="steps >= 0"):
        EnrollSettings(steps=-1).validated()
    with pytest.raises(ValueError, match="shape"):
        enroll(model, complete, semantic[:-1], EnrollSettings(steps=3))


def test_flow_perceptual_enrolls_once_per_voice_and_streaming_keeps_the_voice(tiny_codec, monkeypatch):
    import engine.perceptual.base as base

    calls = []
    real = base.enroll

    def counting(model, complete, semantic, settings):
        calls.append(int(complete.shape[0]))
        return real(model, complete, semantic, settings)

    monkeypatch.setattr(base, "enroll", counting)
    codec = tiny_codec
    voice_a = Prompt.from_codes(codec.encode(voiced(0.8, seed=1)).codes, codec)
    voice_b = Prompt.from_codes(codec.encode(voiced(0.8, seed=5)).codes, codec)
    units = codec.encode(voiced(0.5, seed=2)).semantic_tokens
    cfg = dict(random_init=True, size="tiny", compile="off", steps=2)
    plain = FlowPerceptual(FlowConfig(**cfg), codec, torch.device("cpu"))
    enrolled = FlowPerceptual(FlowConfig(**cfg, enroll_steps=3, enroll_lr=1e-2, enroll_batch=2, enroll_cache=1), codec, torch.device("cpu"))

    out = enrolled.generate(units, voice_a, seed=3)
    assert calls == [voice_a.num_frames]
    assert not torch.allclose(out, plain.generate(units, voice_a, seed=3))  # the tuned copy spoke
    torch.testing.assert_close(enrolled.generate(units, voice_a, seed=3), out)
    assert calls == [voice_a.num_frames]  # cached: the voice is not enrolled twice

    # a streamed continuation appends generated frames: the same voice, enrolled on its own frames only
    longer = voice_a.extended(codec, units, out)
    assert longer.num_frames > voice_a.num_frames and longer.voice_key() == voice_a.voice_key()
    enrolled.generate(units, longer, seed=4)
    assert calls == [voice_a.num_frames]

    enrolled.generate(units, voice_b, seed=3)  # another voice: enrolled, and (cache of one) a pushes out
    assert voice_b.voice_key() != voice_a.voice_key() and len(calls) == 2
    enrolled.generate(units, voice_a, seed=3)
    assert len(calls) == 3
    assert plain.enrolled(voice_a) is plain.model(None)  # enrollment off: the shared model


def test_engine_enrolls_a_voice_once_in_its_prompt_stage_and_says_so(tmp_path, monkeypatch):
    import numpy as np

    import engine.perceptual.base as base
    from engine.config import load_config
    from engine.pipeline import Engine, GenerationOptions

    calls = []
    real = base.enroll
    monkeypatch.setattr(base, "enroll", lambda *a: calls.append(1) or real(*a))
    cfg = load_config("tiny", overrides=[f"paths.voices_dir={tmp_path}", "perceptual.flow.enroll_steps=2", "perceptual.flow.enroll_lr=1e-2"])
    eng = Engine(cfg)
    eng.voices.add("Tester", (16000, voiced(2.0, seed=3)), codec=eng.codec)
    src = (16000, voiced(1.0, seed=4))
    first = eng.convert(src, "Tester", options=GenerationOptions(seed=1, steps=2))
    assert calls == [1] and first.metrics.stages["prompt"] > 0
    again = eng.convert(src, "Tester", options=GenerationOptions(seed=1, steps=2))
    assert calls == [1] and np.array_equal(again.wav, first.wav)  # cached: same voice, same copy, same audio
    eng.tts("Hello.", "Tester", options=GenerationOptions(seed=0))
    assert calls == [1]  # every task shares the voice's enrolled copy
    flow = next(s for s in eng.status() if s.role == "flow")
    assert "enrolled" in flow.name

    plain = Engine(load_config("tiny", overrides=[f"paths.voices_dir={tmp_path}"]))
    off = plain.convert(src, "Tester", options=GenerationOptions(seed=1, steps=2))
    assert not np.allclose(off.wav, first.wav) and calls == [1]
    assert "enrolled" not in next(s for s in plain.status() if s.role == "flow").name
