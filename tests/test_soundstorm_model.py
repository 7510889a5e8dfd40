"""SoundStorm model behaviour: generation contract (all modes), sampling, training loss."""

import pytest
import torch

from engine.perceptual.soundstorm import SoundStorm, SoundStormModelConfig


def tiny(mode="soundstorm", seed=0):
    torch.manual_seed(seed)
    return SoundStorm(SoundStormModelConfig.preset("tiny", mode=mode, codec="tiny")).eval()


def inputs(b=2, np_=5, nt=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 1024, (b, nt), generator=g), torch.randint(0, 1024, (b, np_, 8), generator=g)


def test_presets():
    base = SoundStormModelConfig.preset("base")
    assert (base.backbone.dim, base.backbone.depth, base.backbone.heads, base.backbone.head_dim) == (1024, 12, 8, 128)
    t = SoundStormModelConfig.preset("tiny")
    assert (t.backbone.dim, t.backbone.depth) == (32, 2)
    with pytest.raises(ValueError, match="unknown SoundStorm size"):
        SoundStormModelConfig.preset("huge")


@pytest.mark.parametrize("mode", ["soundstorm", "anygpt", "speechgpt_gen"])
def test_generate_contract(mode):
    model = tiny(mode)
    sem, prompt = inputs()
    calls = []
    out = model.generate(sem, prompt, steps=3, keep_prompt=True, on_call=lambda t: calls.append(t.clone()))
    assert out.shape == (2, 7, 8) and out.dtype == torch.long
    assert torch.equal(out[..., 0], sem)  # RVQ-1 passes through
    assert int(out[..., 1:].min()) >= 0 and int(out[..., 1:].max()) < 1024  # no mask ids left
    # the prompt's own tokens are what every network call sees on the prompt frames (keep_prompt=True, our variant)
    for t in calls:
        assert torch.equal(t[:, :5], prompt[:, :, 1:])
    expected_calls = {"soundstorm": 3 + 6, "anygpt": 4 + 6, "speechgpt_gen": 4 + 6 * 4}[mode]
    assert len(calls) == expected_calls
    # greedy decoding in our mode uses no noise at all; the public modes are reproducible from a seed
    again = model.generate(sem, prompt, steps=3, keep_prompt=True, seed=None if mode == "soundstorm" else 0)
    if mode == "soundstorm":
        assert torch.equal(again, out)
    else:
        assert torch.equal(again, model.generate(sem, prompt, steps=3, keep_prompt=True, seed=0))


def test_soundstorm_mode_levels_above_stay_masked():
    model = tiny()
    sem, prompt = inputs(b=1)
    calls = []
    model.generate(sem, prompt, steps=2, on_call=lambda t: calls.append(t.clone()))
    mask_id = model.cfg.mask_id
    # level-2 iterations (2 calls): every finer level of the target is masked
    for t in calls[:2]:
        assert bool((t[:, 5:, 1:] == mask_id).all())
    assert bool((calls[0][:, 5:, 0] == mask_id).all())
    assert int((calls[1][:, 5:, 0] == mask_id).sum()) == 4  # floor(cos(pi/4) * 7) frames stay masked
    # finer level q: levels < q decided, levels >= q masked
    for q, t in enumerate(calls[2:], start=1):
        assert bool((t[:, 5:, :q] != mask_id).all()) and bool((t[:, 5:, q:] == mask_id).all())


def test_sampling_is_seeded_and_differs_from_greedy():
    model = tiny()
    sem, prompt = inputs()
    a = model.generate(sem, prompt, steps=4, greedy=False, temperature=1.0, seed=3)
    b = model.generate(sem, prompt, steps=4, greedy=False, temperature=1.0, seed=3)
    c = model.generate(sem, prompt, steps=4, greedy=False, temperature=1.0, seed=4)
    g = model.generate(sem, prompt, steps=4, greedy=True)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a, g)
    for mode in ("anygpt", "speechgpt_gen"):
        s1 = model.generate(sem, prompt, steps=2, greedy=False, seed=5, mode=mode)
        assert torch.equal(s1, model.generate(sem, prompt, steps=2, greedy=False, seed=5, mode=mode))
        assert not torch.equal(s1, model.generate(sem, prompt, steps=2, greedy=True, seed=5, mode=mode))


def test_public_modes_keep_prompt_flag():
    """keep_prompt=False (the default) reproduces the public code: the finer levels overwrite the prompt too."""
    model = tiny("anygpt")
    sem, prompt = inputs(b=1)
    calls = []
    model.generate(sem, prompt, steps=2, seed=0, on_call=lambda t: calls.append(t.clone()))
    assert not torch.equal(calls[-1][:, :5, 2:], prompt[:, :, 3:])  # overwritten on the prompt frames
    kept = []
    model.generate(sem, prompt, steps=2, keep_prompt=True, seed=0, on_call=lambda t: kept.append(t.clone()))
    assert torch.equal(kept[-1][:, :5], prompt[:, :, 1:])


def test_without_prompt_and_bad_inputs():
    model = tiny()
    sem, prompt = inputs()
    assert model.generate(sem, None, steps=2).shape == (2, 7, 8)
    with pytest.raises(ValueError, match="steps"):
        model.generate(sem, prompt, steps=0)
    with pytest.raises(ValueError, match="prompt_codes"):
        model.generate(sem, prompt[..., :7])
    with pytest.raises(ValueError, match="RVQ-1"):
        model.generate(sem + 1024, prompt)
    with pytest.raises(ValueError, match="mode"):
        model.generate(sem, prompt, mode="vallE")
    with pytest.raises(ValueError, match="temperature"):
        model.generate(sem, prompt, greedy=False, temperature=0.0)


def test_padding_does_not_change_the_loss():
    """Frames past ``lengths`` take no part: any values there give the same loss (same draws)."""
    model = tiny()
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 1024, (2, 8, 20), generator=g)
    lengths = torch.tensor([20, 13])
    other = codes.clone()
    other[1, :, 13:] = torch.randint(0, 1024, (8, 7), generator=g)
    l1, logs = model.loss(codes, lengths, torch.Generator().manual_seed(7))
    l2, _ = model.loss(other, lengths, torch.Generator().manual_seed(7))
    torch.testing.assert_close(l1, l2, atol=1e-6, rtol=1e-6)
    assert 0 <= logs["acc"] <= 1
    # an untrained model is close to chance: about log(1024)
    assert 5.0 < float(l1.detach()) < 9.0


def test_loss_only_scores_masked_positions_of_one_level():
    """The gradient reaches the logits of exactly one level per sample."""
    model = tiny()
    codes = torch.randint(0, 1024, (3, 8, 16), generator=torch.Generator().manual_seed(2))
    grads = []
    model.logits_bias.register_hook(lambda gr: grads.append(gr.clone()))
    loss, _ = model.loss(codes[:1], torch.tensor([16]), torch.Generator().manual_seed(3))
    loss.backward()
    levels_with_grad = (grads[0].abs().sum(-1) > 0).nonzero().flatten().tolist()
    assert len(levels_with_grad) == 1
