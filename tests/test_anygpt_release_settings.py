"""Task routing and settings as AnyGPT releases them: base-model templates on AnyGPT-base, chat on
AnyGPT-chat, text settings for ASR and speech settings for speech output, typed chat phrased as the
official chat CLI phrases it (prompts rendered by the authors' code: tests/fixtures/anygpt_tokenizer)."""

import json
import re
from pathlib import Path

from engine.config import load_config
from engine.semantic.config import SemanticConfig
from engine.semantic.history import Conversation
from engine.semantic.prompts import Turn, prompt_family

EXPECTED = json.loads((Path(__file__).parent / "fixtures" / "anygpt_tokenizer" / "expected.json").read_text(encoding="utf-8"))
P = EXPECTED["prompts"]


def units_of(text: str) -> list[int]:
    return [int(u) for u in re.findall(r"<🗣️(\d+)>", text)]


def test_our_prompts_equal_the_authors_rendering():
    fam = prompt_family("anygpt")
    spoken = units_of(P["chat_spoken"])
    assert fam.chat_prompt([], fam.user_message(None, spoken)) == P["chat_spoken"]
    assert fam.chat_prompt([], fam.user_message("What is the capital of France?", None)) == P["chat_typed_interleaved"]
    reply_units = units_of(P["chat_full_reply"][len(P["chat_spoken"]):])
    turn = Turn(user_units=spoken, transcript="what is the weather like today", reply_text="It is sunny and warm.", reply_units=reply_units)
    history = Conversation()
    history.append(turn)
    past = history.render(fam, len, 10**6)
    assert fam.chat_prompt(past, fam.user_message(None, spoken)) == P["chat_spoken_second_turn"]
    text = "Hello there, how are you today? It's 3:45 pm."
    assert fam.tts_prompt(text, 0) == P["tts_base"]
    assert fam.tts_prompt(text, 0) + fam.tts_response(units_of(P["tts_base_full"])) == P["tts_base_full"]
    assert fam.asr_prompt(units_of(P["asr_base"]), 0) == P["asr_base"]


def test_each_task_has_its_checkpoint_defaulting_to_the_authors():
    cfg = SemanticConfig()
    assert cfg.path_for("chat") == "fnlp/AnyGPT-chat"
    assert cfg.path_for("tts") == cfg.path_for("asr") == "fnlp/AnyGPT-base"
    assert cfg.routes() == {"fnlp/AnyGPT-chat": ["chat"], "fnlp/AnyGPT-base": ["tts", "asr"]}
    default = load_config("default").semantic
    assert default.routes() == cfg.routes()
    one = SemanticConfig(tts_path=None, asr_path=None)
    assert one.routes() == {"fnlp/AnyGPT-chat": ["chat", "tts", "asr"]}
    assert load_config("tiny").semantic.routes() == {"tiny": ["chat", "tts", "asr"]}


def test_text_and_speech_settings_as_released():
    cfg = SemanticConfig()
    speech, text = cfg.sampling, cfg.text_sampling  # speech_generate_config.json / text_generate_config.json
    assert (speech.temperature, speech.top_p, speech.repetition_penalty, speech.max_new_tokens) == (1.0, 1.0, 1.05, 1500)
    assert (text.temperature, text.top_p, text.repetition_penalty, text.max_new_tokens) == (1.0, 1.0, 1.0, 100)


def test_asr_uses_text_settings_and_tts_speech_settings(monkeypatch):
    from engine.semantic.model import SemanticModel

    model = SemanticModel.tiny(SemanticConfig(random_init=True, family="anygpt"))
    seen = []
    real = model._generate

    def spy(prompt, scaffold, sampling):
        seen.append(sampling)
        return real(prompt, scaffold, sampling)

    monkeypatch.setattr(model, "_generate", spy)
    model.cfg.text_sampling.max_new_tokens = 7
    model.transcribe([1, 2, 3])
    model.speak("hi")
    assert seen[0] is model.cfg.text_sampling and seen[1] is model.cfg.sampling


def test_engine_routes_tasks_and_status_names_them(tmp_path):
    from engine.pipeline import Engine
    from tests.semantic_helpers import save_ours

    chat = save_ours(tmp_path / "chat", "anygpt", seed=0)
    base = save_ours(tmp_path / "base", "anygpt", seed=1)
    cfg = load_config("tiny", overrides=[f"semantic.path={chat}", "semantic.random_init=false", f"semantic.tts_path={base}", f"semantic.asr_path={base}"])
    engine = Engine(cfg)
    assert engine.semantic_for("tts") is engine.semantic_for("asr")
    assert engine.semantic_for("chat") is engine.semantic is not engine.semantic_for("tts")
    assert engine.semantic_for("tts").name == str(base)
    rows = {s.role: s for s in engine.status()}
    assert rows["semantic"].name == "anygpt: chat" and rows["semantic"].source == str(chat) and rows["semantic"].loaded
    assert rows["semantic-tts-asr"].name == "anygpt: TTS, ASR" and rows["semantic-tts-asr"].source == str(base)
    from app.status import status_markdown

    table = status_markdown(engine.status(), cfg.profile)
    assert "semantic-tts-asr (anygpt: TTS, ASR)" in table and "semantic (anygpt: chat)" in table


def test_tts_task_is_served_by_the_tts_model(tmp_path, monkeypatch):
    from engine.pipeline import Engine, GenerationOptions
    from tests.audio_helpers import voiced
    from tests.semantic_helpers import save_ours

    chat = save_ours(tmp_path / "chat", "anygpt", seed=0)
    base = save_ours(tmp_path / "base", "anygpt", seed=1)
    cfg = load_config("tiny", overrides=[f"paths.voices_dir={tmp_path / 'v'}", f"semantic.path={chat}", "semantic.random_init=false",
                                         f"semantic.tts_path={base}", f"semantic.asr_path={base}"])
    engine = Engine(cfg)
    engine.voices.add("Tester", (16000, voiced(1.5)), codec=engine.codec)
    asked = []
    for task in ("chat", "tts"):
        model = engine.semantic_for(task)
        monkeypatch.setattr(model, "stream_speak", lambda text, sampling=None, instruction=0, candidates=None, task=task: asked.append(task) or iter([[5] * 20]))
    result = engine.tts("Hello there.", "Tester", options=GenerationOptions(seed=0))
    assert asked == ["tts"] and result.wav.size > 0
