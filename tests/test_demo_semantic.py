"""Demo voice part 3 plumbing: instruction data from an extraction folder (held-out rows never
enter), the from-scratch character / phoneme tokenizer (one token per unit), a tiny from-scratch
LLaMA trained and resumed through the CLI, and the saved model served by SemanticModel."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.cli.train_llm import main as train_llm
from engine.semantic.config import SamplingConfig, SemanticConfig, TextSamplingConfig
from engine.semantic.frontend import TextFrontEnd
from engine.semantic.model import SemanticModel
from engine.semantic.prompts import prompt_family
from engine.semantic.tokenizer import build_char_tokenizer
from engine.train.codes_data import ShardWriter
from engine.train.llm_data import codes_records

CONFIG = Path(__file__).resolve().parents[1] / "assets/configs/train/llm_demo.yaml"
HAS_ESPEAK = shutil.which("espeak-ng") is not None
TEXTS = ["the cat sat on the mat.", "hello there, friend!", "is it noon yet?", "good morning to you.", "a held out sentence here."]


def _manifest_row(uid: str, voice: str, sid: str, text: str, split: str, heldout_voice: bool, heldout_sentence: bool) -> dict:
    return {"id": uid, "path": f"{voice}/{uid}.wav", "voice": voice, "text": text, "sentence_id": sid, "split": split,
            "heldout_voice": heldout_voice, "heldout_sentence": heldout_sentence}


@pytest.fixture(scope="module")
def codes_dir(tmp_path_factory) -> Path:
    """A tiny extraction folder of a demo corpus: two training voices, sentence s4 held out, one
    held-out voice, and a row *mislabelled* train that names the held-out voice. Every row is in
    the codes folder, as if the extraction had not filtered them (build-data must)."""
    root = tmp_path_factory.mktemp("sem")
    corpus, codes = root / "corpus", root / "codes"
    corpus.mkdir()
    rows = []
    for voice in ("tv_a", "tv_b"):
        for k, text in enumerate(TEXTS):
            held = k == 4
            rows.append(_manifest_row(f"{voice}-s{k}", voice, f"s{k}", text, "test" if held else "train", False, held))
    rows.append(_manifest_row("hv-s0", "hv", "s0", TEXTS[0], "test", True, False))
    rows.append(_manifest_row("hv-s1", "hv", "s1", TEXTS[1], "train", False, False))  # mislabelled: hv is a held-out voice
    (corpus / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rng = np.random.default_rng(0)
    with ShardWriter(codes, "demo", shard_size=4) as writer:
        for r in rows:
            frames = 20 + 3 * len(r["text"]) % 17
            writer.add(r["id"], rng.integers(0, 1024, size=(8, frames)), r["text"], r["voice"], str(corpus / r["path"]))
    return codes


def test_records_from_codes_keep_heldout_rows_out(codes_dir, tmp_path, capsys):
    out = tmp_path / "data.jsonl"
    assert train_llm(["build-data", "--codes", str(codes_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "8 of 12 utterances used (4 not in the train split" in printed  # manifest found from the index's source paths
    records = [json.loads(line) for line in out.read_text().splitlines()]
    ids = {r["id"] for r in records}
    assert ids == {f"{v}-s{k}" for v in ("tv_a", "tv_b") for k in range(4)}  # no s4, no hv (even the mislabelled row)
    assert sorted(r["task"] for r in records) == ["asr"] * 8 + ["tts"] * 8
    fam = prompt_family("speechgpt_gen")
    codes = np.load(codes_dir / "shard-00000.npz")["u0"]  # tv_a-s0
    tts = next(r for r in records if r["id"] == "tv_a-s0" and r["task"] == "tts")
    asr = next(r for r in records if r["id"] == "tv_a-s0" and r["task"] == "asr")
    assert tts["prompt"].endswith(f"This is input: {TEXTS[0]} <eoh>. [SpeechGPT]:")
    assert tts["response"] == fam.tts_response(codes[0].tolist())  # RVQ-1 is row 0
    assert asr["prompt"].endswith(f"This is input: {fam.units.encode(codes[0].tolist())} <eoh>. [SpeechGPT]:")
    assert asr["response"] == f" {TEXTS[0]}<eoa>"
    assert {r["text_units"] for r in records} == {"chars"} and {r["codec"] for r in records} == {"demo"}


def test_an_explicit_manifest_that_lacks_rows_leaves_them_out(codes_dir, tmp_path):
    manifest = tmp_path / "manifest.jsonl"
    rows = [json.loads(line) for line in (codes_dir.parent / "corpus/manifest.jsonl").read_text().splitlines()]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows if r["voice"] != "tv_b"))
    records, report = codes_records(prompt_family("speechgpt_gen"), codes_dir, TextFrontEnd(), manifest)
    assert {r["id"].split("-")[0] for r in records} == {"tv_a"}
    assert report["kept"] == 4 and report["not_train"] == 8


def test_asr_fraction_keeps_every_tts_record_and_a_seeded_share_of_asr():
    from engine.train.llm_scratch import subsample_task

    records = [{"task": "tts" if i % 2 else "asr", "id": str(i)} for i in range(200)]
    half = subsample_task(records, "asr", 0.5, seed=3)
    assert sum(r["task"] == "tts" for r in half) == 100 and sum(r["task"] == "asr" for r in half) == 50
    assert half == subsample_task(records, "asr", 0.5, seed=3)  # the same subset on --resume
    assert half != subsample_task(records, "asr", 0.5, seed=4)
    assert [r["id"] for r in half] == sorted((r["id"] for r in half), key=int)  # order kept
    assert subsample_task(records, "asr", 1.0, seed=0) is records
    assert all(r["task"] == "tts" for r in subsample_task(records, "asr", 0.0, seed=0))
    with pytest.raises(ValueError, match="between 0 and 1"):
        subsample_task(records, "asr", 1.5, seed=0)


@pytest.mark.skipif(not HAS_ESPEAK, reason="needs the espeak-ng program")
def test_phoneme_records_convert_the_tts_input_only(codes_dir):
    records, _ = codes_records(prompt_family("speechgpt_gen"), codes_dir, TextFrontEnd("phonemes"))
    tts = next(r for r in records if r["id"] == "tv_a-s1" and r["task"] == "tts")
    asr = next(r for r in records if r["id"] == "tv_a-s1" and r["task"] == "asr")
    ipa = TextFrontEnd("phonemes")(TEXTS[1])
    assert ipa != TEXTS[1] and "ð" in ipa and ipa.endswith("!") and ", " in ipa  # punctuation kept
    assert f"This is input: {ipa} <eoh>." in tts["prompt"]
    assert asr["response"] == f" {TEXTS[1]}<eoa>"  # ASR writes text, not phonemes
    assert tts["text_units"] == "phonemes"


@pytest.mark.parametrize("units", ["chars", pytest.param("phonemes", marks=pytest.mark.skipif(not HAS_ESPEAK, reason="needs espeak-ng"))])
def test_char_tokenizer_round_trip_one_token_per_unit(units, tmp_path):
    from transformers import AutoTokenizer

    fam = prompt_family("speechgpt_gen")
    text = TextFrontEnd(units)("Hello there, how are you?")
    tok = build_char_tokenizer("speechgpt_gen", text)
    sample = fam.tts_prompt(text) + fam.tts_response([0, 5, 1023, 5])
    ids = tok(sample, add_special_tokens=False).input_ids
    assert tok.decode(ids) == sample
    pieces = tok.convert_ids_to_tokens(ids)
    assert pieces[-7:] == ["<sosp>", "<0>", "<5>", "<1023>", "<5>", "<eosp>", "<eoa>"]  # each unit one token
    text_ids = tok(text, add_special_tokens=False).input_ids
    assert len(text_ids) == len(text)  # one token per character (no byte fallback for the alphabet)
    assert tok.unk_token_id not in tok("naïve 日本", add_special_tokens=False).input_ids  # unseen characters: bytes
    assert tok.decode(tok("naïve 日本", add_special_tokens=False).input_ids) == "naïve 日本"
    tok.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path)(sample, add_special_tokens=False).input_ids == ids


def test_demo_config_is_a_cpu_sized_scratch_model():
    from engine.cli.train_llm import _scratch_config
    from engine.semantic.scratch import build_scratch_model, count_parameters

    run = _scratch_config(str(CONFIG), [])
    assert run.model.size == "small" and run.model.text_units in ("chars", "phonemes")
    assert run.data.max_tokens <= run.model.max_positions and run.train.save_every > 0
    tok = build_char_tokenizer("speechgpt_gen", "abc")
    assert 4e6 <= count_parameters(build_scratch_model(run.model.size, tok)) <= 8e6  # trains on 2 CPU cores in hours


def _tiny_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["run", "--model", "scratch:tiny", "--config", str(CONFIG), "--data", str(data), "--out", str(out), "--quiet",
            "--train-set", "data.batch_tokens=600", "--train-set", "train.warmup_steps=2", "--train-set", "train.log_every=1",
            "--train-set", "train.eval_every=0", "--train-set", "train.save_every=3", "--train-set", "data.valid_fraction=0.2", *extra]


@pytest.fixture(scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_scratch_training_runs_resumes_and_serves(codes_dir, tmp_path, capsys, one_thread):
    data, out = tmp_path / "data.jsonl", tmp_path / "run"
    assert train_llm(["build-data", "--codes", str(codes_dir), "--out", str(data)]) == 0
    assert train_llm(_tiny_args(data, out, "--max-steps", "3")) == 0
    first = json.loads((out / "final/history.json").read_text())
    assert [h["step"] for h in first if "loss" in h] == [1, 2, 3]
    assert all(np.isfinite(h["loss"]) for h in first if "loss" in h)
    assert (out / "checkpoints/step-00000003/trainer.json").is_file()
    w3 = (out / "final/model.safetensors").read_bytes()
    assert train_llm(_tiny_args(data, out, "--max-steps", "5", "--resume")) == 0
    assert "done: step 5" in capsys.readouterr().out
    second = json.loads((out / "final/history.json").read_text())
    assert [h["step"] for h in second if "loss" in h] == [4, 5]  # continued, not restarted
    assert (out / "final/model.safetensors").read_bytes() != w3
    config = json.loads((out / "final/config.json").read_text())
    assert config["text_units"] == "chars" and config["speech_family"] == "speechgpt_gen" and config["speech_codec"] == "demo"

    cfg = SemanticConfig(path=str(out / "final"), tts_path=None, asr_path=None, family="speechgpt_gen", device="cpu",
                         max_context_tokens=1024, sampling=SamplingConfig(max_new_tokens=12, seed=0),
                         text_sampling=TextSamplingConfig(max_new_tokens=10, seed=0))
    model = SemanticModel.from_pretrained(cfg.path, cfg, device="cpu")
    assert model.frontend == TextFrontEnd("chars")
    units = model.speak("the cat sat.")
    assert 1 <= len(units) <= 12 and all(0 <= u < 1024 for u in units)
    assert isinstance(model.transcribe([1, 2, 3, 4, 5]), str)


def test_init_from_continues_a_saved_model_with_a_fresh_schedule(codes_dir, tmp_path, one_thread):
    """`--train-set init_from=FOLDER`: the saved weights and tokenizer, a new run (step 1 again); a
    model of another size is refused with what differs."""
    from safetensors.torch import load_file

    data = tmp_path / "data.jsonl"
    assert train_llm(["build-data", "--codes", str(codes_dir), "--out", str(data)]) == 0
    assert train_llm(_tiny_args(data, tmp_path / "a", "--max-steps", "2")) == 0
    first = tmp_path / "a" / "final"
    more = _tiny_args(data, tmp_path / "b", "--max-steps", "1", "--train-set", "train.lr=0", "--train-set", "train.ema_decay=0",
                      "--train-set", f"init_from={first}")
    assert train_llm(more) == 0
    history = json.loads((tmp_path / "b/final/history.json").read_text())
    assert [h["step"] for h in history if "loss" in h] == [1]  # a new schedule
    assert (tmp_path / "b/final/tokenizer.json").read_text() == (first / "tokenizer.json").read_text()
    a, b = load_file(first / "model.safetensors"), load_file(tmp_path / "b/final/model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k].float(), b[k].float()) for k in a)  # lr 0: the weights it started from
    with pytest.raises(ValueError, match="differs from the training config in"):
        train_llm(_tiny_args(data, tmp_path / "c", "--max-steps", "1", "--model", "scratch:small", "--train-set", f"init_from={first}"))
    # units of another codec (e.g. demo codec v2 -> v3): refused unless asked for, then the weights carry over
    other = tmp_path / "other.jsonl"
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    assert all(r.get("codec") for r in rows)
    other.write_text("".join(json.dumps({**r, "codec": "another-codec"}) + "\n" for r in rows))
    with pytest.raises(ValueError, match="init_other_codec"):
        train_llm(_tiny_args(other, tmp_path / "d", "--max-steps", "1", "--train-set", f"init_from={first}"))
    assert train_llm(_tiny_args(other, tmp_path / "e", "--max-steps", "1", "--train-set", "train.lr=0", "--train-set", "train.ema_decay=0",
                                "--train-set", f"init_from={first}", "--train-set", "init_other_codec=true")) == 0
    e = load_file(tmp_path / "e/final/model.safetensors")
    assert all(torch.equal(a[k].float(), e[k].float()) for k in a)
    assert json.loads((tmp_path / "e/final/config.json").read_text())["speech_codec"] == "another-codec"


@pytest.mark.skipif(not HAS_ESPEAK, reason="needs the espeak-ng program")
def test_phoneme_model_converts_tts_input_at_inference(codes_dir, tmp_path, capsys, one_thread, monkeypatch):
    data, out = tmp_path / "data.jsonl", tmp_path / "run"
    assert train_llm(["build-data", "--codes", str(codes_dir), "--out", str(data), "--text-units", "phonemes"]) == 0
    with pytest.raises(ValueError, match="text_units phonemes"):  # the YAML says chars: refused, not mixed
        train_llm(_tiny_args(data, out, "--max-steps", "1"))
    assert train_llm(_tiny_args(data, out, "--max-steps", "1", "--train-set", "model.text_units=phonemes")) == 0
    cfg = SemanticConfig(path=str(out / "final"), tts_path=None, asr_path=None, family="speechgpt_gen", device="cpu",
                         max_context_tokens=1024, sampling=SamplingConfig(max_new_tokens=6, seed=0))
    model = SemanticModel.from_pretrained(cfg.path, cfg, device="cpu")
    assert model.frontend == TextFrontEnd("phonemes")
    prompts = []
    real = model._generate
    monkeypatch.setattr(model, "_generate", lambda prompt, *a: prompts.append(prompt) or real(prompt, *a))
    assert all(0 <= u < 1024 for u in model.speak("hello there, friend!"))
    assert f"This is input: {TextFrontEnd('phonemes')('hello there, friend!')} <eoh>." in prompts[0]


def test_scratch_run_refuses_fine_tuning_options_and_unknown_sizes(tmp_path, capsys):
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"task": "asr", "prompt": "[Human]: x <eoh>. [SpeechGPT]:", "response": " y<eoa>"}) + "\n")
    with pytest.raises(SystemExit):
        train_llm(["run", "--model", "scratch:tiny", "--data", str(data), "--out", str(tmp_path / "o"), "--lr", "1e-3"])
    assert "--train-set train.lr=" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown scratch model size 'huge'"):
        train_llm(["run", "--model", "scratch:huge", "--data", str(data), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit):
        train_llm(["run", "--config", str(CONFIG), "--model", "gpt2", "--data", str(data), "--out", str(tmp_path / "o")])


def test_shipped_demo_semantic_model_speaks_and_hears(one_thread):
    """The demo profile's semantic model (assets/models/demo/semantic) loads offline with the settings
    the profile gives it, ends the speech of a short sentence on its own (a broken or untrained model
    runs to the token limit) at a length of speech for that text, and writes letters for speech units."""
    from dataclasses import replace

    from engine.config import load_config

    repo = CONFIG.parents[3]
    cfg = load_config("demo").semantic
    folder = repo / cfg.path
    if not (folder / "model.safetensors").is_file():
        pytest.skip("no demo semantic model is shipped yet (docs/demo.md, 'Semantic model (part 3)')")
    assert (folder / "README.md").is_file()
    assert sum(p.stat().st_size for p in folder.iterdir()) < 30e6
    model = SemanticModel.from_config(replace(cfg, path=str(folder)), device="cpu")
    config = json.loads((folder / "config.json").read_text())
    assert model.frontend == TextFrontEnd(config["text_units"]) and config["speech_codec"] == load_config("demo").codec.name
    sentence = "The museum opens at nine in the morning."
    units = model.speak(sentence, replace(cfg.sampling, seed=0))
    assert 40 <= len(units) <= 8 * 50 < cfg.sampling.max_new_tokens  # 0.8-8 s for eight words, ended by the model
    assert all(0 <= u < 1024 for u in units)
    heard = model.transcribe(units)
    assert sum(ch.isalpha() for ch in heard) >= 5
