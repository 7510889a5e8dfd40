"""The real train-soundstorm entry point memorises synthetic token data and uses the voice prompt."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.cli.train_soundstorm import main as train_main
from engine.errors import ConfigError
from engine.perceptual.soundstorm import SoundStorm, SoundStormModelConfig
from engine.train.train_soundstorm import init_embeddings_from_codebooks

VOCAB = np.arange(12) * 37 + 5  # the RVQ-1 ids in use


def voice(semantic: np.ndarray, speaker: int) -> np.ndarray:
    """RVQ-2..8 as a fixed function of the RVQ-1 token and the speaker: [7, T]."""
    return np.stack([(semantic * (l + 3) + 211 * speaker + 13 * l) % 1024 for l in range(1, 8)])


def write_codes_folder(folder: Path, n_utts: int = 6, frames: int = 48, seed: int = 0) -> list[np.ndarray]:
    """The shared extracted-codes format: index.jsonl + .npz shards of int16 [8, T], written by hand."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    utts, lines, shards = [], [], {}
    for u in range(n_utts):
        sem = VOCAB[rng.integers(0, len(VOCAB), frames)]
        codes = np.concatenate([sem[None], voice(sem, u % 2)]).astype(np.int16)
        shard = f"shard-{u // 4:05d}.npz"
        shards.setdefault(shard, {})[f"k{u}"] = codes
        lines.append({"id": f"utt{u}", "shard": shard, "key": f"k{u}", "frames": frames, "text": f"utterance {u}"})
        utts.append(codes.astype(np.int64))
    for shard, arrays in shards.items():
        np.savez(folder / shard, **arrays)
    (folder / "index.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (folder / "meta.json").write_text(json.dumps({"codec": "tiny"}))
    return utts


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("soundstorm_train")
    utts = write_codes_folder(root / "data")
    rc = train_main(["--data", str(root / "data"), "--out", str(root / "run"), "--size", "tiny", "--profile", "tiny",
                     "--quiet", "--max-steps", "300"])
    assert rc == 0
    return SoundStorm.from_pretrained(root / "run" / "final", codec="tiny"), utts, root


def test_training_memorises(trained):
    model, utts, root = trained
    assert model.cfg.mode == "soundstorm" and model.cfg.codec == "tiny"
    history = json.loads((root / "run" / "final" / "history.json").read_text())
    losses = [h["loss"] for h in history if "loss" in h]
    assert losses[-1] < losses[0] / 20
    p = 16
    matches = []
    for codes in utts:
        c = torch.from_numpy(codes)
        out = model.generate(c[:1, p:], c[:, :p].t()[None], steps=8)  # [1, T - p, 8]
        assert torch.equal(out[0, :, 0], c[0, p:])
        matches.append(float((out[0, :, 1:] == c[1:, p:].t()).float().mean()))
    print("exact-match rate per utterance:", [round(m, 3) for m in matches])
    assert min(matches) > 0.9


def test_prompt_sets_the_voice(trained):
    """Content of one speaker, prompt of the other: the finer levels follow the prompt's speaker."""
    model, utts, _ = trained
    content, prompt = torch.from_numpy(utts[0]), torch.from_numpy(utts[1])  # speakers 0 and 1
    out = model.generate(content[:1, 16:], prompt[:, :16].t()[None], steps=8)[0]
    wanted = torch.from_numpy(voice(utts[0][0, 16:], 1)).t()
    follows_prompt = float((out[:, 1:] == wanted).float().mean())
    follows_content = float((out[:, 1:] == content[1:, 16:].t()).float().mean())
    print(f"prompt speaker's codes: {follows_prompt:.3f}, content speaker's codes: {follows_content:.3f}")
    assert follows_prompt > 0.9 and follows_content < 0.2


def test_codebook_initialisation():
    torch.manual_seed(0)
    model = SoundStorm(SoundStormModelConfig.preset("tiny"))
    books = torch.randn(8, 1024, 32)
    assert init_embeddings_from_codebooks(model, books)
    codes = torch.randint(0, 1024, (1, 5, 7))
    emb = model.code_embeds(codes + model.offsets).sum(2)
    torch.testing.assert_close(emb, sum(books[l + 1][codes[..., l]] for l in range(7)))
    assert torch.equal(model.semantic_emb.weight, books[0])
    assert not init_embeddings_from_codebooks(model, torch.randn(8, 1024, 64))  # width mismatch: untouched


def test_codec_mismatch_between_data_and_profile(tmp_path):
    write_codes_folder(tmp_path / "data", n_utts=2, frames=8)
    meta = tmp_path / "data" / "meta.json"
    meta.write_text(json.dumps({"codec": "hubert_avg"}))
    with pytest.raises(ConfigError, match="'hubert_avg' codec but the profile's codec is 'tiny'"):
        train_main(["--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--size", "tiny", "--profile", "tiny", "--quiet"])
    with pytest.raises(ConfigError, match="no index.jsonl"):
        train_main(["--data", str(tmp_path), "--out", str(tmp_path / "run"), "--size", "tiny", "--profile", "tiny", "--quiet"])


def test_config_file_overrides_and_init_from(trained, tmp_path):
    """A training YAML + --train-set overrides; --init-from starts from a checkpoint (lr 0 keeps it)."""
    model, _, root = trained
    (tmp_path / "run.yaml").write_text("model:\n  size: tiny\n  mode: anygpt\ntrain:\n  lr: 0.0\n  warmup_steps: 0\n")
    rc = train_main(["--data", str(root / "data"), "--out", str(tmp_path / "ft"), "--config", str(tmp_path / "run.yaml"),
                     "--train-set", "train.max_steps=2", "--init-from", str(root / "run" / "final"), "--profile", "tiny", "--quiet"])
    assert rc == 0
    tuned = SoundStorm.from_pretrained(tmp_path / "ft" / "final", codec="tiny")
    assert tuned.cfg.mode == "anygpt"
    history = json.loads((tmp_path / "ft" / "final" / "history.json").read_text())
    assert history[-1]["step"] == 2
    for k, v in model.state_dict().items():
        assert torch.equal(v, tuned.state_dict()[k]), k
