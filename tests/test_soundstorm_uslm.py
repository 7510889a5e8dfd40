"""The USLM SoundStorm (ZhangXInFD/soundstorm-speechtokenizer) and the official SoundStorm decode
as our defaults (golden data: tests/fixtures/zx_soundstorm_*, anygpt_soundstorm_tiny.pt)."""

import json
from pathlib import Path

import torch

from engine.config import load_config
from engine.perceptual.config import SoundStormConfig
from engine.perceptual.convert_soundstorm import config_from_state, convert_soundstorm_state, detect_variant, soundstorm_from_state
from engine.perceptual.soundstorm import SoundStorm, gumbel_from_uniform

FIX = Path(__file__).parent / "fixtures"


def zx_model():
    data = torch.load(FIX / "zx_soundstorm_tiny.pt", weights_only=True)
    state = data["state_dict"]
    assert detect_variant(state) == "anygpt"  # net.conformer.* as AnyGPT's copy
    return data, soundstorm_from_state(state, config_from_state(state, "anygpt", heads=2))


def test_zx_checkpoint_generates_token_exact():
    data, model = zx_model()
    g = data["generate"]
    draws = iter(g["uniform_draws"])
    out = model.generate(g["semantic_tokens"], g["prompt_tokens"], steps=g["steps"], greedy=True,
                         noise_fn=lambda shape: gumbel_from_uniform(next(draws)).reshape(shape))
    assert torch.equal(out, g["output"])
    # the same from the global RNG seeded as the reference run was (its only random draws)
    torch.manual_seed(g["torch_seed"])
    assert torch.equal(model.generate(g["semantic_tokens"], g["prompt_tokens"], steps=g["steps"]), g["output"])


def test_zx_full_size_manifest_converts_with_nothing_missing_or_unexpected():
    manifest = json.loads((FIX / "zx_soundstorm_manifest.json").read_text())
    state = {k: torch.empty(shape, device="meta") for k, shape in manifest["state_dict"].items()}
    assert len(state) == manifest["num_tensors"] == 356
    cfg = config_from_state(state, "anygpt")
    assert (cfg.backbone.dim, cfg.backbone.depth, cfg.backbone.heads, cfg.backbone.head_dim) == (1024, 12, 8, 128)
    with torch.device("meta"):
        model = SoundStorm(cfg)
    converted = convert_soundstorm_state(state)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert set(converted) == set(ours), set(converted) ^ set(ours)
    assert all(tuple(converted[k].shape) == ours[k] for k in ours)
    assert sum(v.numel() for v in state.values()) == manifest["num_parameters"]


def test_uslm_file_loads_and_is_paired_with_hubert_avg(tmp_path):
    data, _ = zx_model()
    path = tmp_path / "SoundStorm_LibriSpeech" / "SoundStorm_best_dev.pt"
    path.parent.mkdir()
    torch.save(data["state_dict"], path)
    model = SoundStorm.from_pretrained(path, codec="hubert_avg", heads=2)
    assert model.cfg.codec == "hubert_avg" and model.cfg.mode == "anygpt"
    g = data["generate"]
    torch.manual_seed(g["torch_seed"])
    assert torch.equal(model.generate(g["semantic_tokens"], g["prompt_tokens"]), g["output"])  # defaults = official decode
    cfg = load_config("uslm")
    assert cfg.codec.name == "hubert_avg" and cfg.perceptual.soundstorm.checkpoint_codec == "hubert_avg"
    assert cfg.perceptual.soundstorm.path == "fnlp/USLM" and cfg.perceptual.soundstorm.filename == "SoundStorm_LibriSpeech/SoundStorm_best_dev.pt"


def test_defaults_reproduce_anygpt_official_decode():
    """No decode argument given: AnyGPT's own generate (vc_steps 3, greedy, prompt finer levels
    overwritten as in its code), replayed with its recorded Gumbel noise."""
    data = torch.load(FIX / "anygpt_soundstorm_tiny.pt", weights_only=True)
    state = data["state_dict"]
    model = soundstorm_from_state(state, config_from_state(state, "anygpt", heads=2))
    g = data["generate"]
    assert g["steps"] == 3
    noise = iter(g["gumbel_noise"])
    calls = []
    out = model.generate(g["semantic_tokens"], g["prompt_tokens"], noise_fn=lambda shape: next(noise),
                         on_call=lambda t: calls.append(t.reshape(1, -1).clone()))
    assert len(calls) == g["net_inputs"].shape[0] and all(torch.equal(a, b) for a, b in zip(calls, g["net_inputs"]))
    assert torch.equal(out, g["output"])
    cfg = SoundStormConfig()
    assert cfg.keep_prompt is False and cfg.greedy is True
    default = load_config("default").perceptual.soundstorm
    assert default.steps == 3 and default.keep_prompt is False
