"""Behaviour of our flow-matching model: masking, padding, guidance, checkpoints."""

import pytest
import torch

from engine.errors import ModelUnavailableError
from engine.perceptual.flow_model import FlowModel, FlowModelConfig
from engine.perceptual.solvers import nfe, time_grid


def tiny(chain="implicit", **kw):
    torch.manual_seed(0)
    return FlowModel(FlowModelConfig.preset("tiny", feature_dim=16, codec="tiny", chain=chain, **kw)).eval()


@pytest.mark.parametrize("chain", ["implicit", "explicit"])
def test_prompt_and_padding_frames_never_leak_into_loss(chain):
    """The gradient of the loss w.r.t. the predicted velocity is exactly zero on prompt and padding
    frames, and non-zero on every generated frame."""
    model = tiny(chain)
    z, zs = torch.randn(2, 30, 16), torch.randn(2, 30, 16)
    lengths, prompts = torch.tensor([30, 24]), torch.tensor([7, 11])
    captured = {}
    velocity = model.estimator.velocity

    def spy(*args, **kwargs):
        v = velocity(*args, **kwargs)
        v.retain_grad()
        captured["v"] = v
        return v

    model.estimator.velocity = spy
    loss, _ = model.loss(z, zs, lengths, generator=torch.Generator().manual_seed(0), prompt_lengths=prompts)
    loss.backward()
    grad = captured["v"].grad.abs().sum(-1)  # [B, N]
    for i in range(2):
        p, n = int(prompts[i]), int(lengths[i])
        assert float(grad[i, :p].max()) == 0.0  # prompt
        assert float(grad[i, n:].sum()) == 0.0  # padding
        assert bool((grad[i, p:n] > 0).all())  # generated frames


def test_prompt_lengths_drawn_within_bounds():
    model = tiny()
    lengths = torch.tensor([5, 400, 2])
    seen = set()
    for s in range(30):
        _, logs = model.loss(torch.randn(3, 400, 16), torch.randn(3, 400, 16), lengths, generator=torch.Generator().manual_seed(s))
        seen.add(logs["prompt_frames"])
    assert len(seen) > 1  # drawn anew per call


@pytest.mark.parametrize("chain", ["implicit", "explicit"])
def test_padding_never_affects_unpadded_outputs(chain):
    model = tiny(chain)
    x = torch.randn(1, 21, 16)
    ctx = torch.randn(1, 21, 16) * (torch.arange(21) < 6)[None, :, None]
    sem = torch.randn(1, 21, 16)
    alone = model.estimator(x, torch.tensor([0.4]), ctx, sem)
    pad = lambda t: torch.cat([torch.cat([t, torch.randn(1, 9, 16)], 1), torch.randn(1, 30, 16)])  # noqa: E731
    mask = torch.zeros(2, 30, dtype=torch.bool)
    mask[0, :21] = True
    mask[1] = True
    batch = model.estimator(pad(x), torch.tensor([0.4, 0.9]), pad(ctx), pad(sem), mask)
    torch.testing.assert_close(batch[0, :21], alone[0], atol=1e-5, rtol=0)
    # generate: the same item alone and in a padded batch, same seed
    sem_t, p_c, p_s = torch.randn(12, 16), torch.randn(5, 16), torch.randn(5, 16)
    one = model.generate([sem_t], [p_c], [p_s], steps=4, seed=7)[0]
    two = model.generate([sem_t, torch.randn(20, 16)], [p_c, torch.randn(8, 16)], [p_s, torch.randn(8, 16)], steps=4, seed=7)
    torch.testing.assert_close(two[0], one, atol=1e-5, rtol=0)
    assert two[1].shape == (20, 16)


def test_generate_shapes_guidance_and_determinism():
    model = tiny(prompt_dropout=0.2)
    sem, pc, ps = torch.randn(9, 16), torch.randn(4, 16), torch.randn(4, 16)
    a = model.generate([sem], [pc], [ps], steps=3, seed=1)[0]
    b = model.generate([sem], [pc], [ps], steps=3, seed=1)[0]
    c = model.generate([sem], [pc], [ps], steps=3, seed=2)[0]
    assert a.shape == (9, 16) and torch.equal(a, b) and not torch.equal(a, c)
    g = model.generate([sem], [pc], [ps], steps=3, seed=1, guidance_scale=2.0)[0]
    assert g.shape == (9, 16) and not torch.allclose(g, a)
    e = model.generate([sem], [pc], [ps], steps=3, seed=1, method="euler", schedule="sway")[0]
    assert torch.isfinite(e).all()
    none = model.generate([sem], steps=2, seed=0)[0]  # no prompt at all
    assert none.shape == (9, 16)


def test_time_grid_and_nfe():
    g = time_grid(8, "sway")
    assert g[0] == 0 and abs(float(g[-1]) - 1) < 1e-6 and bool((g[1:] > g[:-1]).all())
    assert float(g[1]) < 1 / 8  # sway spends more steps near t = 0
    assert nfe(8, "midpoint") == 16 and nfe(8, "euler") == 8
    with pytest.raises(ValueError):
        time_grid(0)


def test_save_load_roundtrip_and_codec_check(tmp_path):
    model = tiny("explicit")
    model.set_feature_stats(torch.randn(16), torch.rand(16) + 0.5)
    model.save_pretrained(tmp_path / "m")
    loaded = FlowModel.from_pretrained(tmp_path / "m", codec="tiny")
    assert loaded.cfg == model.cfg
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    with pytest.raises(ModelUnavailableError, match="trained on the 'tiny' codec"):
        FlowModel.from_pretrained(tmp_path / "m", codec="hubert_avg")
    with pytest.raises(ModelUnavailableError, match="missing config.yaml, model.safetensors"):
        FlowModel.from_pretrained(tmp_path / "nothing")
