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


class PerFrameEstimator(torch.nn.Module):
    """A backbone-free estimator: each frame's velocity depends on that frame's inputs only."""

    def __init__(self, dim: int):
        super().__init__()
        torch.manual_seed(1)
        self.w_x, self.w_c, self.w_s = (torch.nn.Linear(dim, dim) for _ in range(3))

    def condition(self, context, semantic):
        return self.w_c(context) + self.w_s(semantic)

    def velocity(self, x, t, cond, mask):
        return torch.tanh(self.w_x(x) + cond) * t[:, None, None]


@pytest.mark.parametrize("chain", ["implicit", "explicit"])
def test_loss_ignores_targets_on_prompt_and_padding_frames(chain):
    """With a per-frame estimator, changing the target on prompt or padding frames leaves the loss
    bit-identical, and changing it on one generated frame changes it (the wrapper's masking alone)."""
    from engine.perceptual.cfm import ConditionalFlowMatching, FlowChain

    cfm = ConditionalFlowMatching(PerFrameEstimator(8), FlowChain.named(chain)).eval()
    z, zs = torch.randn(2, 20, 8), torch.randn(2, 20, 8)
    lengths, prompts = torch.tensor([20, 15]), torch.tensor([6, 4])

    def loss(target):
        return float(cfm.loss(target, zs, lengths, generator=torch.Generator().manual_seed(3), prompt_lengths=prompts)[0].detach())

    base = loss(z)
    changed = z.clone()
    changed[0, :6] += 5.0  # prompt frames of item 0
    changed[1, :4] -= 3.0  # prompt frames of item 1
    changed[1, 15:] = 100.0  # padding of item 1
    assert loss(changed) == base
    generated = z.clone()
    generated[1, 9] += 1.0
    assert loss(generated) != base


def test_loss_unchanged_by_padding_content_with_the_conformer():
    model = tiny("explicit")
    z, zs = torch.randn(2, 24, 16), torch.randn(2, 24, 16)
    lengths = torch.tensor([24, 17])
    kw = dict(generator=torch.Generator().manual_seed(0), prompt_lengths=torch.tensor([5, 3]))
    a = model.loss(z, zs, lengths, **kw)[0]
    z2, zs2 = z.clone(), zs.clone()
    z2[1, 17:], zs2[1, 17:] = torch.randn(7, 16) * 10, torch.randn(7, 16) * 10
    kw["generator"] = torch.Generator().manual_seed(0)
    b = model.loss(z2, zs2, lengths, **kw)[0]
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_generate_padded_matches_items():
    model = tiny("explicit")
    sem = torch.randn(3, 14, 16)
    lengths = torch.tensor([14, 9, 11])
    pc, ps = torch.randn(3, 6, 16), torch.randn(3, 6, 16)
    p_len = torch.tensor([6, 0, 4])  # item 1 has no prompt
    out, mask = model.generate_padded(sem, lengths, pc, ps, p_len, steps=3, seed=5)
    assert out.shape == (3, 14, 16) and mask.sum(1).tolist() == [14, 9, 11]
    assert float(out[~mask].abs().sum()) == 0.0
    for i in range(3):
        n, p = int(lengths[i]), int(p_len[i])
        alone = model.generate([sem[i, :n]], [pc[i, :p]] if p else None, [ps[i, :p]] if p else None, steps=3, seed=5 + i)[0]
        torch.testing.assert_close(out[i, :n], alone, atol=1e-5, rtol=0)


def test_sinusoidal_time_option(tmp_path):
    model = tiny(time_embedding="sinusoidal")
    est = model.estimator
    assert est.to_embed.in_features == 2 * 16  # no raw time channel
    x, ctx = torch.randn(1, 10, 16), torch.randn(1, 10, 16)
    v1, v2 = est(x, torch.tensor([0.1]), ctx), est(x, torch.tensor([0.7]), ctx)
    assert not torch.allclose(v1, v2)  # the time reaches the network
    model.save_pretrained(tmp_path / "s")
    loaded = FlowModel.from_pretrained(tmp_path / "s", codec="tiny")
    assert loaded.cfg.time_embedding == "sinusoidal"
    torch.testing.assert_close(loaded.estimator(x, torch.tensor([0.7]), ctx), v2, atol=0, rtol=0)
    with pytest.raises(ValueError, match="time embedding"):
        FlowModelConfig.preset("tiny", feature_dim=16, codec="tiny", time_embedding="learned")


def test_presets_follow_the_paper_sizes():
    """Appendix A: 1024 hidden, 16 heads, 4096 FFN; 6 / 12 / 24 layers. Built on the meta device."""
    counts = {}
    for size, depth in (("small", 6), ("base", 12), ("large", 24)):
        cfg = FlowModelConfig.preset(size, feature_dim=1024, codec="x")
        assert (cfg.backbone.dim, cfg.backbone.heads, cfg.backbone.dim * cfg.backbone.ff_mult, cfg.backbone.depth) == (1024, 16, 4096, depth)
        with torch.device("meta"):
            counts[size] = sum(p.numel() for p in FlowModel(cfg).parameters())
    assert counts["base"] == 341_924_864  # same as the authors' full-size model (manifests.json)
    assert counts["small"] < counts["base"] < counts["large"]


def test_half_precision_weights_keep_float32_state_and_stats():
    model = tiny()
    model.set_feature_stats(torch.randn(16) * 3, torch.rand(16) + 0.5)
    sem, pc, ps = torch.randn(30, 16), torch.randn(8, 16), torch.randn(8, 16)
    ref = model.generate([sem], [pc], [ps], steps=4, seed=0)[0]
    model.cast_weights(torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert model.feature_mean.dtype == torch.float32 and model.feature_std.dtype == torch.float32
    half = model.generate([sem], [pc], [ps], steps=4, seed=0)[0]
    assert half.dtype == torch.float32 and half.shape == ref.shape
    rel = float((half - ref).norm() / ref.norm())
    # bfloat16 keeps ~3 significant digits per operation; through a few layers and 4 ODE steps
    # the output stays within a few percent, far from the ~100 % of an unrelated sample
    assert rel < 0.05, rel
    other = model.generate([sem], [pc], [ps], steps=4, seed=1)[0]
    assert float((other - ref).norm() / ref.norm()) > 10 * rel


def test_compile_buckets_pad_and_mask_without_changing_outputs():
    """With a compiled network, sequences are padded to the bucket and masked: the valid frames come
    out as without padding. (The compiled function is swapped for the eager one here: the padding and
    masking are what is tested, compiling takes minutes on a small CPU.)"""
    model = tiny()
    sem, pc, ps = torch.randn(13, 16), torch.randn(5, 16), torch.randn(5, 16)
    want = model.generate([sem], [pc], [ps], steps=3, seed=4)[0]
    calls = []

    def velocity(x, t, cond, mask):
        calls.append((x.shape[1], mask is not None))
        return model.estimator.velocity(x, t, cond, mask)

    model.enable_compile(bucket_frames=8)
    assert model._velocity is not None and model.compile_bucket == 8
    model._velocity = velocity
    got = model.generate([sem], [pc], [ps], steps=3, seed=4)[0]
    assert calls and all(c == (24, True) for c in calls)  # 18 frames -> one bucket of 24, padding masked
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="bucket_frames"):
        model.enable_compile(bucket_frames=0)


def test_channel_norm_channel_last_matches_and_trains():
    """forward_last equals forward in value and in gradient (the fast inference kernel's statistics
    carry no gradient, so training must take the differentiable route)."""
    from engine.perceptual.conformer import ChannelNorm

    torch.manual_seed(0)
    norm = ChannelNorm(8)
    with torch.no_grad():
        norm.gamma.mul_(torch.linspace(0.5, 1.5, 8).view_as(norm.gamma))
    x = torch.randn(2, 8, 5, requires_grad=True)  # [B, C, N]
    ref = norm(x)
    (ref * torch.arange(80.0).view(2, 8, 5)).sum().backward()
    g_ref = x.grad.clone()
    x.grad = None
    last = norm.forward_last(x.transpose(1, 2))  # [B, N, C]
    torch.testing.assert_close(last.transpose(1, 2), ref, atol=1e-5, rtol=1e-5)
    (last.transpose(1, 2) * torch.arange(80.0).view(2, 8, 5)).sum().backward()
    torch.testing.assert_close(x.grad, g_ref, atol=1e-4, rtol=1e-4)
    with torch.no_grad():  # the inference kernel gives the same values
        torch.testing.assert_close(norm.forward_last(x.transpose(1, 2)).transpose(1, 2), ref, atol=1e-5, rtol=1e-5)
