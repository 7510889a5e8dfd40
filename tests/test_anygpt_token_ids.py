"""AnyGPT's exact token ids: what transformers 4.34.1's slow LlamaTokenizer (AnyGPT's pinned stack)
gives for prompts rendered by the authors' code, for the three ``legacy`` settings a checkpoint's
``tokenizer_config.json`` can carry (golden data: tests/fixtures/anygpt_tokenizer, README there)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from engine.semantic.config import SamplingConfig, SemanticConfig
from engine.semantic.prompts import prompt_family
from engine.semantic.slow_llama import SlowLlamaEncoder, slow_llama_encoder_for

FIX = Path(__file__).parent / "fixtures" / "anygpt_tokenizer"
EXPECTED = json.loads((FIX / "expected.json").read_text(encoding="utf-8"))
LEGACY = ("absent", "True", "False")


def tokenizer_folder(root: Path, legacy: str) -> Path:
    """A tokenizer folder as 4.34.1 wrote it for ``legacy`` (its ``added_tokens_decoder`` is left
    out of the config: it only repeats ``added_tokens.json`` with every strip flag off)."""
    folder = root / f"legacy_{legacy}"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.model", "added_tokens.json", "special_tokens_map.json"):
        shutil.copy(FIX / name, folder / name)
    config = json.loads((FIX / "tokenizer_configs.json").read_text())[legacy]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("legacy", LEGACY)
def test_prompts_tokenize_as_anygpt_stack(tmp_path, legacy):
    enc = SlowLlamaEncoder.from_folder(tokenizer_folder(tmp_path, legacy))
    assert enc.legacy == (legacy != "False")
    same = 0
    for name, prompt in EXPECTED["prompts"].items():
        case = EXPECTED["cases"][f"{legacy}/{name}"]
        got = [1] + enc.encode(prompt)
        assert enc.tokens(prompt) == case["tokens"][1:], name
        same += got == case["input_ids"]
    assert same == len(EXPECTED["prompts"]) == 8


class ScriptedLM(torch.nn.Module):
    """Replays a known id sequence: the logits of every position favour the next id of ``script``.
    Records every id fed to it, so a test sees exactly what the decode loop wrote."""

    def __init__(self, script: list[int], vocab: int):
        super().__init__()
        self.script = script
        self.embed = torch.nn.Embedding(vocab, 1)
        self.fed: list[int] = []

    def get_input_embeddings(self):
        return self.embed

    def forward(self, input_ids, past_key_values=None, use_cache=True):
        self.fed.extend(input_ids[0].tolist())
        logits = torch.zeros(1, input_ids.shape[1], self.embed.num_embeddings)
        nxt = len(self.fed)
        if nxt < len(self.script):
            logits[0, -1, self.script[nxt]] = 10.0
        return type("Out", (), {"logits": logits})()


def semantic_over(folder: Path, script: list[int]):
    from transformers import AutoTokenizer

    from engine.semantic.model import SemanticModel

    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoder = slow_llama_encoder_for(str(folder), local_only=True)
    assert encoder is not None
    lm = ScriptedLM(script, max(len(tokenizer), max(i for i, _ in encoder.added.values()) + 1))
    return SemanticModel(lm, tokenizer, prompt_family("anygpt"), SemanticConfig(), str(folder), encoder=encoder), lm


@pytest.mark.parametrize("legacy", LEGACY)
@pytest.mark.parametrize("task", ["chat", "tts"])
def test_decode_loop_feeds_anygpt_ids(tmp_path, legacy, task):
    """The whole sequence our loop builds (prompt, fixed scaffold text after each stop token, and the
    sampled slots) equals 4.34.1's ids of the finished exchange, id for id."""
    folder = tokenizer_folder(tmp_path, legacy)
    prompt_name, full_name = ("chat_spoken", "chat_full_reply") if task == "chat" else ("tts_base", "tts_base_full")
    full = EXPECTED["cases"][f"{legacy}/{full_name}"]["input_ids"]
    model, lm = semantic_over(folder, full)
    fam = model.family
    scaffold = fam.chat_scaffold(spoken=True) if task == "chat" else fam.tts_scaffold()
    raw = ""
    for kind, value in model._generate(EXPECTED["prompts"][prompt_name], scaffold, SamplingConfig(temperature=0)):
        if kind == "done":
            raw = value
    # everything up to the closing <eos> is fed; that last fixed token ends the turn (recorded, not fed)
    assert lm.fed == full[:-1] and full[-1] == model.vocab["<eos>"]
    assert EXPECTED["prompts"][prompt_name] + raw == EXPECTED["prompts"][full_name]


def test_from_pretrained_reads_legacy_from_checkpoint(tmp_path):
    """A checkpoint folder's own tokenizer_config.json decides the encoding (legacy False here)."""
    from engine.semantic.model import SemanticModel
    from tests.semantic_helpers import tiny_llama

    folder = tokenizer_folder(tmp_path, "False")
    vocab = 1 + max(json.loads((FIX / "added_tokens.json").read_text()).values())
    lm = tiny_llama(vocab)
    lm.config.save_pretrained(folder)
    torch.save(lm.state_dict(), folder / "pytorch_model.bin")
    model = SemanticModel.from_pretrained(str(folder), SemanticConfig(path=str(folder)), device="cpu")
    assert model.encoder is not None and model.encoder.legacy is False
    prompt = EXPECTED["prompts"]["asr_base"]
    assert [1] + model._ids(prompt) == EXPECTED["cases"]["False/asr_base"]["input_ids"]
    assert model.vocab["<sosp>"] == 10024 and model.unit_ids[5].item() == model.vocab["<🗣️5>"]
