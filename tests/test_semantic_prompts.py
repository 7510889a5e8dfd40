"""Semantic prompts byte for byte, units <-> text, reply parsing of malformed output, history truncation."""

import logging

import pytest

from engine.semantic.history import Conversation, render_turn
from engine.semantic.parsing import parse_reply, parse_text
from engine.semantic.prompts import Turn, fill_scaffold, prompt_family
from engine.semantic.tokenizer import build_tokenizer
from engine.semantic.units import ANYGPT_UNITS, SPEECHGPT_GEN_UNITS

SYSTEM = "You are an AI assistant named MMGPT who can understand and generate multimodal content, including text, speech, images and audio."
SPOKEN = " Please recognize the voice command and give reply and voice"
TYPED = ""  # the official chat CLI's default ("interleaved") passes typed text as it is


def test_anygpt_chat_prompts_render_exactly():
    fam = prompt_family("anygpt")
    speech = fam.user_message(None, [5, 5, 1023])
    assert speech == "<sosp><🗣️5><🗣️5><🗣️1023><eosp>" + SPOKEN
    assert fam.user_message("Hello", None) == "Hello" + TYPED
    assert fam.chat_prompt([], speech) == f"{SYSTEM}\n[Human]: {speech}<eoh>\n[MMGPT]:"
    past = fam.render_turn(speech, "hi", "Hello!", [7, 8], spoken=True)
    assert past == f"[Human]: {speech}<eoh>\n[MMGPT]: <-Ins-> hi\n <-Res-> Hello! <sosp><🗣️7><🗣️8><eosp><eos>\n"
    typed = fam.render_turn("Hi" + TYPED, "Hi", "Hello!", [7], spoken=False)
    assert typed == f"[Human]: Hi{TYPED}<eoh>\n[MMGPT]: Hello!\n<sosp><🗣️7><eosp><eos>\n"
    assert fam.chat_prompt([past], "Bye") == f"{SYSTEM}\n{past}[Human]: Bye<eoh>\n[MMGPT]:"


def test_anygpt_base_tts_and_asr_prompts_render_exactly():
    fam = prompt_family("anygpt")
    assert fam.tts_prompt("Hi there") == "[Human]: I require you to translate these letters into understandable spoken words. This is input: Hi there<eoh> [MMGPT]:"
    assert fam.tts_prompt("Hi", 1) == "[Human]: Please read this text out loud so I can hear it. This is input: Hi<eoh> [MMGPT]:"
    assert fam.tts_response([3, 3]) == " <sosp><🗣️3><🗣️3><eosp><eos>"
    assert fam.asr_prompt([1]) == "[Human]: Convert the speech into a written transcript. <sosp><🗣️1><eosp><eoh> [MMGPT]:"
    assert fam.asr_response("hello") == " hello<eos>"


def test_speechgpt_gen_chain_of_modality_renders_exactly():
    fam = prompt_family("speechgpt_gen")
    msg = fam.user_message(None, [3, 4])
    assert msg == "<sosp><3><4><eosp>"
    assert fam.chat_prompt([], msg) == "[Human]: <sosp><3><4><eosp> <eoh>. [SpeechGPT]:"
    turn = fam.render_turn(msg, "what time is it", "It is noon.", [9, 9, 10], spoken=True)
    assert turn == "[Human]: <sosp><3><4><eosp> <eoh>. [SpeechGPT]: what time is it; [ta] It is noon.; [ua] <sosp><9><9><10><eosp><eoa>\n"
    assert fam.tts_prompt("Hi", 1) == "[Human]: Read the following sentence out loud. This is input: Hi <eoh>. [SpeechGPT]:"
    assert fam.tts_response([1]) == " <sosp><1><eosp><eoa>"
    assert fam.asr_prompt([2]) == "[Human]: Transcribe this speech. This is input: <sosp><2><eosp> <eoh>. [SpeechGPT]:"


@pytest.mark.parametrize("family", ["anygpt", "speechgpt_gen"])
@pytest.mark.parametrize("spoken", [True, False])
def test_scaffold_filled_equals_rendered_reply(family, spoken):
    """What generation writes (scaffold + slot contents) is exactly what history and training data hold."""
    fam = prompt_family(family)
    units = [4, 4, 1000]
    unit_text = "".join(fam.units.token(u) for u in units)
    if family == "anygpt":
        values = {"transcript": " what time is it\n ", "text": " It is noon. " if spoken else " It is noon.\n", "units": unit_text}
    else:
        values = {"transcript": " what time is it; ", "text": " It is noon.; ", "units": unit_text}
    typed = None if spoken else "what time is it"
    filled = fill_scaffold(fam.chat_scaffold(spoken, typed), values)
    assert filled == fam.reply("what time is it", "It is noon.", units, spoken)
    reply = parse_reply(fam, filled)
    assert (reply.text, reply.units, reply.warnings) == ("It is noon.", units, [])
    if spoken:
        assert reply.transcript == "what time is it"


@pytest.mark.parametrize("fmt", [ANYGPT_UNITS, SPEECHGPT_GEN_UNITS])
def test_units_round_trip(fmt):
    units = [0, 0, 17, 1023, 512, 512]
    text = fmt.encode(units)
    parsed = fmt.parse(text)
    assert parsed.units == units and parsed.warnings == []
    with pytest.raises(ValueError, match="outside 0..1023"):
        fmt.encode([1, 1024])


@pytest.mark.parametrize("family", ["anygpt", "speechgpt_gen"])
def test_tokenizer_round_trips_text_and_units(family):
    tok = build_tokenizer(family)
    fam = prompt_family(family)
    text = fam.chat_prompt([], fam.user_message(None, [1, 2, 1023])) + fam.reply("héllo wörld", "ok 👍", [5, 5], True)
    ids = tok(text, add_special_tokens=False).input_ids
    assert tok.decode(ids) == text
    unit_ids = tok(fam.units.encode([7, 7, 1023]), add_special_tokens=False).input_ids
    assert len(unit_ids) == 5  # <sosp>, one token per unit, <eosp>
    assert tok.convert_ids_to_tokens(unit_ids[1:4]) == [fam.units.token(7), fam.units.token(7), fam.units.token(1023)]


def test_malformed_speech_spans(caplog):
    fmt = ANYGPT_UNITS
    with caplog.at_level(logging.WARNING):
        missing_end = fmt.parse("<sosp><🗣️1><🗣️2>")
    assert missing_end.units == [1, 2] and any("<eosp>" in w for w in missing_end.warnings)
    assert "<eosp>" in caplog.text  # logged, not raised
    out_of_range = fmt.parse("<sosp><🗣️1><🗣️4096><🗣️-3><🗣️2><eosp>")
    assert out_of_range.units == [1, 2] and any("out of range" in w for w in out_of_range.warnings)
    text_inside = fmt.parse("<sosp><🗣️1> hello <🗣️2><eosp>")
    assert text_inside.units == [1, 2] and any("text inside" in w for w in text_inside.warnings)
    assert fmt.parse("no speech here").units == []


@pytest.mark.parametrize("family,raw,expected", [
    ("anygpt", " <-Ins-> what time is it\n <-Res-> It is noon. <sosp><🗣️4><🗣️5><eosp><eos>", ("what time is it", "It is noon.", [4, 5], 0)),
    ("anygpt", " <-Res-> Sure <sosp><🗣️4><🗣️5>", ("", "Sure", [4, 5], 1)),  # missing <eosp>
    ("anygpt", "", ("", "", [], 1)),  # empty reply
    ("anygpt", "   \n", ("", "", [], 1)),  # blank reply
    ("anygpt", " <-Res-> only text<eos>", ("", "only text", [], 1)),  # no speech
    ("anygpt", " Hello!\n<sosp><🗣️9><eosp><eos>", ("", "Hello!", [9], 0)),  # typed-input layout
    ("speechgpt_gen", " hi; [ta] Hello!; [ua] <sosp><1><2000><3><eosp><eoa>", ("hi", "Hello!", [1, 3], 1)),  # id out of range
    ("speechgpt_gen", " hi; [ta] Hello!; [ua] <sosp><1>oops<3><eosp><eoa>", ("hi", "Hello!", [1, 3], 1)),  # text in span
    ("speechgpt_gen", " hi; [ta] ; [ua] <sosp><eosp><eoa>", ("hi", "", [], 2)),  # empty answer
    ("anygpt", " <-Ins-> h\ufffdi\n <-Res-> Caf\ufffd\x01 ok <sosp><🗣️4><eosp><eos>", ("hi", "Caf ok", [4], 0)),  # broken bytes
])
def test_parse_reply_defined_results(family, raw, expected):
    reply = parse_reply(prompt_family(family), raw)
    transcript, text, units, min_warnings = expected
    assert (reply.transcript, reply.text, reply.units) == (transcript, text, units)
    assert len(reply.warnings) >= min_warnings
    if min_warnings == 0:
        assert reply.warnings == []


def test_parse_text_drops_speech_tokens():
    fam = prompt_family("speechgpt_gen")
    assert parse_text(fam, " hello world<eoa>") == ("hello world", [])
    text, warnings = parse_text(fam, " hello <sosp><5> world<eoa>")
    assert text == "hello  world" and warnings
    assert parse_text(fam, "<eoa>") == ("", ["empty reply"])


def test_history_keeps_newest_turns():
    fam = prompt_family("speechgpt_gen")
    conv = Conversation()
    for i in range(6):
        conv.append(Turn(user_units=[i] * 20, transcript=f"question {i}", reply_text=f"answer {i}", reply_units=[i] * 30))
    count = len  # one "token" per character keeps the arithmetic visible
    full = conv.render(fam, count, budget=10_000)
    assert len(full) == 6 and "<sosp>" in full[-1] and all("<sosp>" not in t for t in full[:-1])  # old speech -> transcripts
    assert full[0] == "[Human]: question 0 <eoh>. [SpeechGPT]: question 0; [ta] answer 0; [ua] <eoa>\n"
    small = conv.render(fam, count, budget=len(full[-1]) + len(full[-2]) + 5)
    assert [t.split("[ta] ")[1].split(";")[0] for t in small] == ["answer 4", "answer 5"]
    tiny_budget = conv.render(fam, count, budget=80)
    assert len(tiny_budget) == 1 and "answer 5" in tiny_budget[0] and "<sosp>" not in tiny_budget[0]
    assert conv.render(fam, count, budget=5) == []


def test_render_turn_typed_anygpt():
    fam = prompt_family("anygpt")
    turn = Turn(user_text="Hi", transcript="Hi", reply_text="Hello!", reply_units=[1])
    assert render_turn(fam, turn, speech=True) == f"[Human]: Hi{TYPED}<eoh>\n[MMGPT]: Hello!\n<sosp><🗣️1><eosp><eos>\n"
    assert render_turn(fam, turn, speech=False) == f"[Human]: Hi{TYPED}<eoh>\n[MMGPT]: Hello!<eos>\n"
