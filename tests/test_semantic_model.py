"""Semantic model with tiny random LLaMAs: streaming = non-streaming, token sequences as in training,
both on-disk layouts, 4-bit NF4 on CPU, clear errors."""

import pytest
import torch

from engine.errors import ModelUnavailableError
from engine.semantic.config import SamplingConfig, SemanticConfig, TextSamplingConfig
from engine.semantic.history import Conversation
from engine.semantic.model import ReplyDone, SemanticModel, TextDelta, TranscriptDelta, UnitChunk
from tests.semantic_helpers import save_anygpt_layout, save_ours

SAMPLING = SamplingConfig(max_new_tokens=50, seed=3)


@pytest.fixture(scope="module", params=["anygpt", "speechgpt_gen"])
def tiny(request):
    cfg = SemanticConfig(random_init=True, family=request.param, max_text_tokens=12, unit_chunk=10, sampling=SAMPLING,
                         text_sampling=TextSamplingConfig(seed=SAMPLING.seed, max_new_tokens=SAMPLING.max_new_tokens))
    return SemanticModel.tiny(cfg)


@pytest.fixture(scope="module")
def anygpt_folder(tmp_path_factory):
    return save_anygpt_layout(tmp_path_factory.mktemp("anygpt") / "llm")


def test_tiny_is_small_and_named_random(tiny):
    assert tiny.name == "tiny (random)"
    n = sum(p.numel() for p in tiny.model.parameters())
    assert 100_000 < n < 1_000_000
    again = SemanticModel.tiny(tiny.cfg)  # deterministic from the seed
    assert all(torch.equal(a, b) for a, b in zip(tiny.model.parameters(), again.model.parameters()))


@pytest.mark.parametrize("spoken", [True, False])
def test_streaming_equals_non_streaming(tiny, spoken):
    user = [10, 11, 12, 12] if spoken else "hello there"
    events = list(tiny.stream_respond(Conversation(), user))
    assert isinstance(events[-1], ReplyDone) and sum(isinstance(e, ReplyDone) for e in events) == 1
    final = events[-1].reply
    again = tiny.respond(Conversation(), user)
    assert (again.transcript, again.text, again.units) == (final.transcript, final.text, final.units)
    streamed_units = [u for e in events if isinstance(e, UnitChunk) for u in e.units]
    assert streamed_units == final.units and len(final.units) > 0
    assert all(len(e.units) <= 10 for e in events if isinstance(e, UnitChunk))
    first_unit = next(i for i, e in enumerate(events) if isinstance(e, UnitChunk))
    assert first_unit < len(events) - 1  # units arrive before the reply is done
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text.strip() == final.text
    if spoken:
        assert "".join(e.text for e in events if isinstance(e, TranscriptDelta)).strip() == final.transcript
    else:
        assert final.transcript == "hello there" and not any(isinstance(e, TranscriptDelta) for e in events)
    other = tiny.respond(Conversation(), user, SamplingConfig(max_new_tokens=50, seed=4))
    assert other.units != final.units  # the seed decides


def test_speak_stream_and_transcribe(tiny):
    units = tiny.speak("Good morning")
    assert units and all(0 <= u < 1024 for u in units)
    chunks = list(tiny.stream_speak("Good morning"))
    assert [u for c in chunks for u in c] == units and all(len(c) <= 10 for c in chunks)
    assert tiny.speak("Good morning", SamplingConfig(temperature=0, max_new_tokens=30)) == tiny.speak("Good morning", SamplingConfig(temperature=0, max_new_tokens=30, seed=9))
    text = tiny.transcribe(units[:10])
    assert isinstance(text, str) and "<" not in text.replace("<unk>", "")


def test_budget_cut_is_reported(tiny):
    reply = tiny.respond(Conversation(), [1, 2, 3], SamplingConfig(max_new_tokens=20, seed=0))
    assert any("token budget" in w and "cut off" in w for w in reply.warnings)
    assert len(reply.units) <= 20


def favour(model: SemanticModel, token_ids: list[int]) -> None:
    """Make ``token_ids`` the model's overwhelming choice at every step (a hook on the output logits)."""
    def hook(_module, _inputs, logits):
        logits[..., token_ids] += 1e4
        return logits

    model.model.lm_head.register_forward_hook(hook)


def test_template_markers_never_appear_in_text(tiny):
    """Even a model that wants nothing but template markers ([Human], <eoh>...) writes none into the
    transcript or reply text: only the slot's own stop token may end it."""
    model = SemanticModel.tiny(tiny.cfg)
    markers = [model.vocab[t] for t in model.family.special_tokens if t in model.vocab]
    favour(model, markers)
    for user in ([5, 6, 7], "hello"):
        reply = model.respond(Conversation(), user, SamplingConfig(max_new_tokens=40, seed=1))
        for text in (reply.transcript, reply.text):
            assert not any(t in text for t in model.family.special_tokens if t not in ("<sosp>", "<eosp>")), text


def test_end_of_text_token_closes_a_text_slot(tiny):
    """A model that ends its text with the tokenizer's </s> gets a well-formed reply: the slot is closed
    with its own stop, no </s> in the text, and the speech span still follows."""
    model = SemanticModel.tiny(tiny.cfg)
    favour(model, [model.tokenizer.eos_token_id])
    reply = model.respond(Conversation(), "hello", SamplingConfig(max_new_tokens=40, seed=1))
    assert model.tokenizer.eos_token not in reply.text and reply.text == ""
    assert len(reply.units) > 0


def test_conversation_grows_and_stays_in_window(tiny):
    conv = Conversation(max_tokens=600)
    for user in ("one", [1, 2, 3], "three", [4, 5]):
        tiny.respond(conv, user, SamplingConfig(max_new_tokens=60, seed=1))
    assert len(conv) == 4 and conv.turns[1].user_units == [1, 2, 3] and conv.turns[2].user_text == "three"
    past = conv.render(tiny.family, tiny.count_tokens, 600 - 60)
    assert 0 < len(past) <= 4 and sum(tiny.count_tokens(t) for t in past) <= 540
    with pytest.raises(ValueError, match="outside 0..1023"):
        tiny.respond(conv, [5, 4096])


def _record_feeds(model):
    """Every id the decode loop feeds, in order (read at the input embedding, whichever decoder runs)."""
    fed: list[int] = []

    def hook(_module, inputs, _output):
        fed.extend(inputs[0].flatten().tolist())

    model.model.get_input_embeddings().register_forward_hook(hook)
    return fed


@pytest.mark.parametrize("layout", ["ours", "anygpt"])
def test_fed_tokens_equal_tokenized_training_text(tmp_path, anygpt_folder, layout):
    """The ids the decode loop feeds are the tokenization of prompt + reply as one string (what
    fine-tuning trains on), also for a SentencePiece tokenizer that adds a dummy-prefix space."""
    family = "anygpt" if layout == "anygpt" else "speechgpt_gen"
    folder = anygpt_folder if layout == "anygpt" else save_ours(tmp_path / "llm", family)
    model = SemanticModel.from_pretrained(str(folder), SemanticConfig(family=family, sampling=SamplingConfig(max_new_tokens=12, seed=0)))
    if layout == "anygpt":
        assert type(model.tokenizer).__name__ == "LlamaTokenizer"
    fed = _record_feeds(model)
    units = model.speak("hello world")
    text = model.family.tts_prompt("hello world") + model.family.tts_response(units)
    if layout == "anygpt":  # AnyGPT's layout is encoded as its own stack (transformers 4.34.1) encodes it
        assert model.encoder is not None
    expected = [model.tokenizer.bos_token_id] + model._ids(text)
    # the loop feeds everything up to the last sampled token; the fixed end of turn is never fed
    assert fed == expected[: len(fed)] and len(fed) >= len(expected) - 2
    fed.clear()
    fam = model.family
    for anchor, piece in ((fam.units.token(3), "<eosp>"), ("<eosp>", fam.end_of_turn), ("[ua]" if family == "speechgpt_gen" else "<-Res->", " <sosp>")):
        ids = model._continuation(anchor, piece)
        assert model._ids(anchor) + ids == model._ids(anchor + piece)


def test_loads_our_layout_like_the_tiny_model(tmp_path):
    ref = SemanticModel.tiny(SemanticConfig(random_init=True, family="anygpt"))
    save_ours(tmp_path / "llm", "anygpt")
    cfg = SemanticConfig(path=str(tmp_path / "llm"), family="anygpt", max_text_tokens=8, sampling=SamplingConfig(max_new_tokens=30, seed=0))
    loaded = SemanticModel.from_config(cfg, device="cpu")
    ref.cfg = cfg
    assert loaded.speak("hi") == ref.speak("hi")
    assert loaded.model.dtype == torch.float32
    with pytest.raises(ModelUnavailableError, match="no speechgpt_gen speech tokens"):
        SemanticModel.from_pretrained(str(tmp_path / "llm"), SemanticConfig(family="speechgpt_gen"))


def test_loads_anygpt_layout_and_chats(anygpt_folder):
    cfg = SemanticConfig(path=str(anygpt_folder), family="anygpt", max_text_tokens=6, sampling=SamplingConfig(max_new_tokens=40, seed=0))
    model = SemanticModel.from_config(cfg, device="cpu")
    reply = model.respond(Conversation(), [1, 2, 3])
    assert reply.units and all(0 <= u < 1024 for u in reply.units)
    assert isinstance(model.transcribe([1, 2, 3]), str)


def test_missing_model_message(tmp_path):
    with pytest.raises(ModelUnavailableError, match="hf download") as err:
        SemanticModel.from_pretrained(str(tmp_path / "nowhere"), SemanticConfig())
    assert "config.json" in str(err.value)
    with pytest.raises(ModelUnavailableError, match="hf download fnlp/AnyGPT-chat"):
        SemanticModel.from_pretrained("fnlp/AnyGPT-chat", SemanticConfig())  # offline in tests
    with pytest.raises(ModelUnavailableError, match="unknown semantic.quant"):
        SemanticModel.from_pretrained(str(tmp_path), SemanticConfig(quant="3bit"))


def test_4bit_without_bitsandbytes_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_bnb(name, *args, **kwargs):
        if name == "bitsandbytes" or name.startswith("bitsandbytes."):
            raise ImportError("No module named 'bitsandbytes'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_bnb)
    with pytest.raises(ModelUnavailableError, match="bitsandbytes"):
        SemanticModel.from_pretrained(str(tmp_path), SemanticConfig(quant="4bit"))


def test_4bit_nf4_loads_on_cpu_with_bitsandbytes(tmp_path):
    pytest.importorskip("bitsandbytes")
    save_ours(tmp_path / "llm", "anygpt")
    cfg = SemanticConfig(path=str(tmp_path / "llm"), family="anygpt", quant="4bit", max_text_tokens=8, sampling=SamplingConfig(max_new_tokens=20, seed=0))
    model = SemanticModel.from_config(cfg, device="cpu")
    linear4 = [m for m in model.model.modules() if "4bit" in type(m).__name__]
    assert linear4 and linear4[0].weight.quant_state.quant_type == "nf4"
    units = model.speak("hello")
    assert units and all(0 <= u < 1024 for u in units)


def test_bench_semantic_prints_rate_and_first_unit(capsys):
    import argparse

    from engine.config import load_config
    from engine.eval import bench_semantic

    parser = argparse.ArgumentParser()
    bench_semantic.add_args(parser)
    args = parser.parse_args(["--units", "12", "--repeats", "1", "--random-arch", "tiny"])
    assert bench_semantic.run(args, load_config("tiny")) == 0
    out = capsys.readouterr().out
    assert "tokens/s" in out and "first unit s" in out and "random tiny weights" in out
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in (["warm"], ["1"])]
    assert len(rows) == 2 and all(int(r[1]) == 12 and float(r[3]) > 0 for r in rows)
