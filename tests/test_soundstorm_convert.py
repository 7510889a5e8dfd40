"""Loading public SoundStorm checkpoints: wrappers, side configs, codec attribution, clear errors."""

from pathlib import Path

import pytest
import torch
import yaml

from engine.errors import ModelUnavailableError
from engine.perceptual.convert_soundstorm import guess_codec, load_public_soundstorm, unwrap_state
from engine.perceptual.soundstorm import SoundStorm, SoundStormModelConfig

FIX = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def official():
    return torch.load(FIX / "official_soundstorm_tiny.pt", weights_only=True)


@pytest.fixture(scope="module")
def anygpt():
    return torch.load(FIX / "anygpt_soundstorm_tiny.pt", weights_only=True)


def assert_logits_match(model, data):
    lg = data["logits"]
    logits = model(lg["acoustic_tokens"], model.condition(lg["semantic_ids"]), lg["seq_mask"]).reshape(2, -1, 1024)
    valid = lg["seq_mask"].repeat_interleave(7, dim=1)
    torch.testing.assert_close(logits[valid], lg["logits"][valid], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("wrap", ["bare", "model", "state_dict", "module_prefix", "trainer_package"])
def test_wrapped_state_dicts(wrap, anygpt):
    sd = anygpt["state_dict"]
    obj = {
        "bare": sd,
        "model": {"model": sd},
        "state_dict": {"state_dict": sd, "epoch": 3},
        "module_prefix": {f"module.{k}": v for k, v in sd.items()},
        "trainer_package": {"model": sd, "optim": {"state": {}}, "steps": torch.tensor(10)},
    }[wrap]
    state = unwrap_state(obj)
    assert set(state) == set(sd)


@pytest.mark.parametrize("name,layout", [("official", "model_args"), ("official", "plain"), ("anygpt", "plain")])
def test_side_config_gives_heads_and_pad_id(tmp_path, name, layout, request):
    """With the repository's config file next to the weights, from_pretrained reproduces the golden
    logits (the head count is not visible in the shapes)."""
    data = request.getfixturevalue(name)
    cfg = data["config"] if layout == "plain" else {"model_args": data["config"]}
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "model_config.yml").write_text(yaml.safe_dump(cfg))
    torch.save(data["state_dict"], folder / "SoundStorm_best_dev.pt")
    model = SoundStorm.from_pretrained(folder, filename="SoundStorm_best_dev.pt")
    assert model.cfg.backbone.heads == 2
    assert model.cfg.semantic_pad_id == (-1 if name == "official" else 1024)
    assert model.cfg.mode == ("speechgpt_gen" if name == "official" else "anygpt")
    assert_logits_match(model, data)


def test_codec_attribution():
    assert guess_codec("/cache/models--fnlp--AnyGPT-speech-modules/snapshots/x/soundstorm/speechtokenizer_soundstorm_mls.pt") == "snake"
    assert guess_codec("fnlp/USLM/SoundStorm_LibriSpeech/SoundStorm_best_dev.pt") == "hubert_avg"
    assert guess_codec("/runs/speechgpt_gen_perceptual/SoundStorm_best_dev.pt") == "snake"


def test_codec_mismatch_is_refused(tmp_path, anygpt):
    folder = tmp_path / "SoundStorm_LibriSpeech"
    folder.mkdir()
    torch.save(anygpt["state_dict"], folder / "SoundStorm_best_dev.pt")
    model = SoundStorm.from_pretrained(folder / "SoundStorm_best_dev.pt", codec="hubert_avg")
    assert model.cfg.codec == "hubert_avg"
    with pytest.raises(ModelUnavailableError, match="trained on the 'hubert_avg' codec"):
        SoundStorm.from_pretrained(folder / "SoundStorm_best_dev.pt", codec="snake")
    # the caller can say what a renamed file was trained on
    assert SoundStorm.from_pretrained(folder / "SoundStorm_best_dev.pt", codec="snake", checkpoint_codec="snake").cfg.codec == "snake"


def test_wrong_sizes_give_a_clear_error(tmp_path, anygpt):
    """A checkpoint for another codebook size loads as a model but is refused for SpeechTokenizer."""
    state = dict(anygpt["state_dict"])
    state["net.to_logits.2.weight"] = state["net.to_logits.2.weight"][..., :512]
    state["net.to_logits.2.bias"] = state["net.to_logits.2.bias"][..., :512]
    state["net.code_embeds.weight"] = state["net.code_embeds.weight"][: 7 * 513]
    torch.save(state, tmp_path / "small.pt")
    with pytest.raises(ModelUnavailableError, match="7 levels x 512 codes.*SpeechTokenizer needs 7 levels"):
        load_public_soundstorm(tmp_path / "small.pt")


def test_not_a_soundstorm_checkpoint(tmp_path):
    torch.save({"to_embed.weight": torch.zeros(2, 2), "net.layers.0.x": torch.zeros(1)}, tmp_path / "flow.pt")
    with pytest.raises(ModelUnavailableError, match="not a SoundStorm checkpoint"):
        SoundStorm.from_pretrained(tmp_path / "flow.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a pickle")
    with pytest.raises(ModelUnavailableError, match="could not read"):
        SoundStorm.from_pretrained(tmp_path / "junk.pt")


def test_missing_files_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    with pytest.raises(ModelUnavailableError, match="hf download fnlp/AnyGPT-speech-modules soundstorm/speechtokenizer_soundstorm_mls.pt"):
        SoundStorm.from_pretrained("fnlp/AnyGPT-speech-modules", "soundstorm/speechtokenizer_soundstorm_mls.pt")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelUnavailableError, match="neither config.yaml"):
        SoundStorm.from_pretrained(empty)
    with pytest.raises(ModelUnavailableError, match="missing SoundStorm_best_dev.pt"):
        SoundStorm.from_pretrained(empty, "SoundStorm_best_dev.pt")


def test_our_format_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = SoundStorm(SoundStormModelConfig.preset("tiny", mode="soundstorm", codec="tiny"))
    model.save_pretrained(tmp_path / "ours")
    assert sorted(p.name for p in (tmp_path / "ours").iterdir()) == ["config.yaml", "model.safetensors"]
    again = SoundStorm.from_pretrained(tmp_path / "ours", codec="tiny")
    assert again.cfg == model.cfg
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])
    sem = torch.randint(0, 1024, (1, 6))
    prompt = torch.randint(0, 1024, (1, 3, 8))
    assert torch.equal(model.eval().generate(sem, prompt, steps=2), again.generate(sem, prompt, steps=2))
