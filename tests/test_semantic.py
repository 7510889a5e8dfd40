"""Semantic model: prompts byte for byte, units <-> text, streaming, malformed output, history, loading."""

import pytest
import torch

from engine.errors import ModelUnavailableError
from engine.semantic.config import SamplingConfig, SemanticConfig
from engine.semantic.history import Conversation
from engine.semantic.model import ReplyDone, SemanticModel, TextDelta, TranscriptDelta, UnitChunk, parse_reply
from engine.semantic.prompts import Turn, prompt_family
from engine.semantic.units import ANYGPT_UNITS, SPEECHGPT_GEN_UNITS

SYSTEM = "You are an AI assistant named MMGPT who can understand and generate multimodal content, including text, speech, images and audio."


def test_anygpt_prompts_render_exactly():
    fam = prompt_family("anygpt")
    assert fam.chat_prompt([], "Hello") == f"{SYSTEM}\n[Human]: Hello<eoh>\n[MMGPT]:"
    speech = fam.user_message(None, [5, 5, 1023])
    assert speech == "<sosp><🗣️5><🗣️5><🗣️1023><eosp>"
    past = fam.render_turn(speech, "hi", "Hello!", [7, 8])
    assert past == "[Human]: <sosp><🗣️5><🗣️5><🗣️1023><eosp><eoh>\n[MMGPT]: <-Ins-> hi\n <-Res-> Hello! <sosp><🗣️7><🗣️8><eosp><eos>\n"
    assert fam.chat_prompt([past], "Bye") == f"{SYSTEM}\n{past}[Human]: Bye<eoh>\n[MMGPT]:"
    assert fam.tts_prompt("Hi there") == "[Human]: Please read the following text out loud.\nThis is input: Hi there<eoh>\n[MMGPT]: "
    assert fam.asr_prompt([1]) == "[Human]: Please transcribe this speech into text.\nThis is input: <sosp><🗣️1><eosp><eoh>\n[MMGPT]: "


def test_speechgpt_gen_chain_of_modality_renders_exactly():
    fam = prompt_family("speechgpt_gen")
    msg = fam.user_message(None, [3, 4])
    assert msg == "<sosp><3><4><eosp>"
    assert fam.chat_prompt([], msg) == "[Human]: <sosp><3><4><eosp> <eoh>. [SpeechGPT]: "
    turn = fam.render_turn(msg, "what time is it", "It is noon.", [9, 9, 10])
    assert turn == "[Human]: <sosp><3><4><eosp> <eoh>. [SpeechGPT]: what time is it; [ta] It is noon.; [ua] <sosp><9><9><10><eosp><eoa>\n"
    assert fam.tts_prompt("Hi", 1) == "[Human]: Read the following sentence out loud. This is input: Hi <eoh>. [SpeechGPT]: "


@pytest.mark.parametrize("fmt", [ANYGPT_UNITS, SPEECHGPT_GEN_UNITS])
def test_units_round_trip(fmt):
    units = [0, 0, 17, 1023, 512, 512]
    text = fmt.encode(units)
    parsed = fmt.parse(text)
    assert parsed.units == units and parsed.warnings == []


def test_malformed_speech_spans():
    fmt = ANYGPT_UNITS
    missing_end = fmt.parse("<sosp><🗣️1><🗣️2>")
    assert missing_end.units == [1, 2] and any("<eosp>" in w for w in missing_end.warnings)
    out_of_range = fmt.parse("<sosp><🗣️1><🗣️4096><🗣️-3><🗣️2><eosp>")
    assert out_of_range.units == [1, 2] and any("out of range" in w for w in out_of_range.warnings)
    text_inside = fmt.parse("<sosp><🗣️1> hello <🗣️2><eosp>")
    assert text_inside.units == [1, 2] and any("text inside" in w for w in text_inside.warnings)
    assert fmt.parse("no speech here").units == []


@pytest.mark.parametrize("family,raw,expected", [
    ("anygpt", " <-Ins-> what time is it\n <-Res-> It is noon. <sosp><🗣️4><🗣️5><eosp><eos>", ("what time is it", "It is noon.", [4, 5], 0)),
    ("anygpt", " <-Res-> Sure <sosp><🗣️4><🗣️5>", ("", "Sure", [4, 5], 1)),  # missing <eosp>
    ("anygpt", "", ("", "", [], 1)),  # empty reply
    ("anygpt", " <-Res-> only text<eos>", ("", "only text", [], 1)),  # no speech
    ("speechgpt_gen", "hi; [ta] Hello!; [ua] <sosp><1><2000><3><eosp><eoa>", ("hi", "Hello!", [1, 3], 1)),  # id out of range
    ("speechgpt_gen", "hi; [ta] Hello!; [ua] <sosp><1>oops<3><eosp><eoa>", ("hi", "Hello!", [1, 3], 1)),  # text in span
])
def test_parse_reply_defined_results(family, raw, expected):
    reply = parse_reply(prompt_family(family), raw)
    transcript, text, units, min_warnings = expected
    assert (reply.transcript, reply.text, reply.units) == (transcript, text, units)
    assert len(reply.warnings) >= min_warnings


@pytest.fixture(scope="module", params=["anygpt", "speechgpt_gen"])
def tiny(request):
    cfg = SemanticConfig(random_init=True, family=request.param, max_text_tokens=12, unit_chunk=10, sampling=SamplingConfig(max_new_tokens=80, seed=3))
    return SemanticModel.tiny(cfg)


def test_tokenizer_round_trips_prompts(tiny):
    fam = tiny.family
    text = fam.render_turn(fam.user_message(None, [1, 2, 1023]), "héllo wörld", "ok 👍", [5])
    ids = tiny.tokenizer(text, add_special_tokens=False).input_ids
    assert tiny.tokenizer.decode(ids) == text
    unit_ids = tiny.tokenizer(fam.units.encode([7, 7]), add_special_tokens=False).input_ids
    assert len(unit_ids) == 4  # <sosp>, one token per unit, <eosp>


@pytest.mark.parametrize("spoken", [True, False])
def test_streaming_equals_non_streaming(tiny, spoken):
    user = [10, 11, 12, 12] if spoken else "hello there"
    events = list(tiny.stream_respond(Conversation(), user))
    assert isinstance(events[-1], ReplyDone)
    final = events[-1].reply
    again = tiny.respond(Conversation(), user)
    assert (again.transcript, again.text, again.units) == (final.transcript, final.text, final.units)
    streamed_units = [u for e in events if isinstance(e, UnitChunk) for u in e.units]
    assert streamed_units == final.units and len(final.units) > 0
    assert all(len(e.units) <= 10 for e in events if isinstance(e, UnitChunk))
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text.strip() == final.text
    if spoken:
        assert "".join(e.text for e in events if isinstance(e, TranscriptDelta)).strip() == final.transcript
    else:
        assert final.transcript == "hello there"
    # the seed decides: another seed, another reply
    other = tiny.respond(Conversation(), user, SamplingConfig(max_new_tokens=80, seed=4))
    assert other.units != final.units


def test_speak_and_transcribe(tiny):
    units = tiny.speak("Good morning")
    assert units and all(0 <= u < 1024 for u in units)
    chunks = list(tiny.stream_speak("Good morning"))
    assert [u for c in chunks for u in c] == units
    assert isinstance(tiny.transcribe(units[:10]), str)


def test_history_keeps_newest_turns():
    fam = prompt_family("speechgpt_gen")
    conv = Conversation()
    for i in range(6):
        conv.append(Turn(user_units=[i] * 20, transcript=f"question {i}", reply_text=f"answer {i}", reply_units=[i] * 30))
    count = len  # one "token" per character keeps the arithmetic visible
    full = conv.render(fam, count, budget=10_000)
    assert len(full) == 6 and "<sosp>" in full[-1] and "<sosp>" not in full[0]  # old speech -> transcripts
    small = conv.render(fam, count, budget=len(full[-1]) + len(full[-2]) + 5)
    assert [t.split("[ta] ")[1].split(";")[0] for t in small] == ["answer 4", "answer 5"]
    tiny_budget = conv.render(fam, count, budget=80)
    assert len(tiny_budget) == 1 and "answer 5" in tiny_budget[0] and "<sosp>" not in tiny_budget[0]
    assert conv.render(fam, count, budget=5) == []


def test_conversation_grows_and_stays_in_window(tiny):
    conv = Conversation(max_tokens=tiny.cfg.max_context_tokens)
    tiny.respond(conv, "one")
    tiny.respond(conv, [1, 2, 3])
    assert len(conv) == 2 and conv.turns[1].user_units == [1, 2, 3]


def test_missing_model_and_4bit_messages(tmp_path):
    with pytest.raises(ModelUnavailableError, match="hf download"):
        SemanticModel.from_pretrained(str(tmp_path / "nowhere"), SemanticConfig())
    with pytest.raises(ModelUnavailableError, match="unknown semantic.quant"):
        SemanticModel.from_pretrained(str(tmp_path), SemanticConfig(quant="3bit"))


def _save_tiny(tmp_path, family="anygpt"):
    model = SemanticModel.tiny(SemanticConfig(random_init=True, family=family))
    model.model.save_pretrained(tmp_path / "llm")
    model.tokenizer.save_pretrained(tmp_path / "llm")
    return model


def test_loads_saved_model_from_folder(tmp_path):
    ref = _save_tiny(tmp_path)
    cfg = SemanticConfig(path=str(tmp_path / "llm"), family="anygpt", max_text_tokens=8, sampling=SamplingConfig(max_new_tokens=30, seed=0))
    loaded = SemanticModel.from_config(cfg, device="cpu")
    ref.cfg = cfg
    assert loaded.speak("hi") == ref.speak("hi")
    with pytest.raises(ModelUnavailableError, match="no speechgpt_gen speech tokens"):
        SemanticModel.from_pretrained(str(tmp_path / "llm"), SemanticConfig(family="speechgpt_gen"))


def test_4bit_nf4_loads_on_cpu_with_bitsandbytes(tmp_path):
    pytest.importorskip("bitsandbytes")
    _save_tiny(tmp_path)
    cfg = SemanticConfig(path=str(tmp_path / "llm"), family="anygpt", quant="4bit", max_text_tokens=8, sampling=SamplingConfig(max_new_tokens=20, seed=0))
    try:
        model = SemanticModel.from_config(cfg, device="cpu")
    except ModelUnavailableError as exc:  # a bitsandbytes build that refuses the CPU: the message must say so
        assert "4-bit" in str(exc) or "bitsandbytes" in str(exc) or "could not load" in str(exc)
        return
    assert any("4bit" in type(m).__name__ for m in model.model.modules())
    units = model.speak("hello")
    assert all(0 <= u < 1024 for u in units)
