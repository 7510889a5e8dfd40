"""Best-of-N speech: several unit sequences sampled in one batch (engine.semantic.batch_decoding) and
the one the codec's phoneme head reads as the text best (engine.semantic.selection)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from engine.config import load_config
from engine.errors import ModelUnavailableError
from engine.semantic.config import SamplingConfig, SemanticConfig
from engine.semantic.model import SemanticModel
from engine.semantic.selection import PhonemeSelector
from tests.semantic_helpers import slot_plan, tiny_llama

SAMPLING = SamplingConfig(temperature=1.0, top_p=0.9, repetition_penalty=1.05, max_new_tokens=40, seed=7)
GREEDY = replace(SAMPLING, temperature=0.0)


def _tiny(**cfg) -> SemanticModel:
    return SemanticModel.tiny(SemanticConfig(random_init=True, family="speechgpt_gen", unit_chunk=7, **cfg))


@pytest.mark.parametrize("fuse", ["on", "off"])
def test_one_row_of_the_batch_is_the_single_reply(fuse):
    """One row samples exactly what ``speak`` samples with the same seed (same arithmetic, same random
    draws); greedy rows all give the greedy reply; rows of a batch differ from each other."""
    model = _tiny(fuse=fuse)
    for s in (GREEDY, SAMPLING, replace(SAMPLING, top_p=1.0)):
        assert model.speak_candidates("Good morning to you", s, 1) == [model.speak("Good morning to you", s)]
    greedy = model.speak("Good morning", GREEDY)
    assert model.speak_candidates("Good morning", GREEDY, 3) == [greedy] * 3
    rows = model.speak_candidates("Good morning", SAMPLING, 4)
    assert len(rows) == 4 and len({tuple(r) for r in rows}) == 4
    assert all(r and all(0 <= u < 1024 for u in r) and len(r) <= SAMPLING.max_new_tokens for r in rows)
    assert model.speak_candidates("Good morning", SAMPLING, 4) == rows  # the seed decides


def test_eager_models_sample_the_candidates_one_after_another():
    model = _tiny(decoder="eager")
    rows = model.speak_candidates("Good morning", SAMPLING, 3)
    assert rows == [model.speak("Good morning", replace(SAMPLING, seed=SAMPLING.seed + k)) for k in range(3)]


class _Head:
    """A phoneme head that reads unit u as symbol u % 4 (id u % 4 + 1), or blank for u >= 100."""

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        ids = torch.where(tokens >= 100, 0, tokens % 4 + 1)
        return torch.nn.functional.one_hot(ids, 5).float().mul(8.0).log_softmax(-1)


class _Phonemes:
    def __call__(self, text: str) -> str:
        return {"bad": "ab", "dab": "dab"}.get(text, "")


def test_selector_prefers_the_units_that_spell_the_text():
    sel = PhonemeSelector(_Head(), ["a", "b", "d", "x"], frontend=_Phonemes())
    assert sel.target("bad") == [1, 2]
    spelled = [0, 100, 1, 1]  # a, blank, b, b -> "ab"
    wrong = [2, 2, 100, 3]  # d, x
    short = [0]
    scores = sel.scores("bad", [wrong, spelled, short, []])
    assert scores[1] < scores[0] and scores[2] == scores[3] == float("inf")
    assert sel.best("bad", [wrong, spelled, short]) == 1
    assert sel.best("???", [wrong, spelled]) == 0  # no phonemes to read: the first


def test_stream_speak_speaks_the_selected_candidate():
    model = _tiny(tts_candidates=3)
    assert model.speak("Good morning", SAMPLING) == model.speak_candidates("Good morning", SAMPLING, 1)[0]  # no selector: one sample
    picked = []

    class Last:
        def best(self, text, candidates):
            picked.append((text, len(candidates)))
            return 2

    model.selector = Last()
    rows = model.speak_candidates("Good morning", SAMPLING, 3)
    chunks = list(model.stream_speak("Good morning", SAMPLING))
    assert [u for c in chunks for u in c] == rows[2] and all(len(c) <= 7 for c in chunks)
    assert picked == [("Good morning", 3)]


def test_engine_attaches_the_codec_selector_or_says_why_it_cannot(tmp_path):
    from engine.pipeline import Engine

    engine = Engine(load_config("tiny", overrides=[f"paths.voices_dir={tmp_path}", "semantic.tts_candidates=2"]))
    with pytest.raises(ModelUnavailableError, match="phoneme head"):  # SpeechTokenizer has no phoneme head
        engine.semantic_for("tts")
    engine = Engine(load_config("tiny", overrides=[f"paths.voices_dir={tmp_path}", "semantic.tts_candidates=0"]))
    with pytest.raises(Exception, match="tts_candidates must be at least 1"):
        engine.semantic_for("tts")
    engine = Engine(load_config("tiny", overrides=[f"paths.voices_dir={tmp_path}", "semantic.tts_steer_every=-1"]))
    with pytest.raises(Exception, match="tts_steer_every must be 0"):
        engine.semantic_for("tts")
    assert Engine(load_config("tiny", overrides=[f"paths.voices_dir={tmp_path}"])).semantic_for("tts").selector is None


def _decoder(sampling: SamplingConfig, vocab: int = 600, fuse: bool = True):
    from engine.semantic.decoding import StaticDecoder

    dec = StaticDecoder(tiny_llama(vocab, seed=3).eval(), max_len=256, fuse=fuse)
    dec.reset(sampling, eos_id=2, vocab=vocab)
    return dec


@pytest.mark.parametrize("top_p", [0.8, 1.0])
def test_rows_draw_from_the_filtered_distribution(top_p):
    """The first token of 4000 rows: frequencies match temperature + top-p + repetition penalty applied to
    the model's logits (the nucleus found among the most likely tokens, or by a full sort)."""
    from engine.semantic.batch_decoding import sample_rows
    from engine.semantic.decoding import filtered_probs, penalize

    vocab, allowed, prompt = 600, list(range(300, 306)), [1, 301, 304, 9]
    s = SamplingConfig(temperature=0.05, top_p=top_p, repetition_penalty=3.0, seed=5)
    dec = _decoder(s, vocab)
    with torch.inference_mode():
        dec.start(prompt)
        plan = slot_plan(dec, vocab, allowed, [])
        logits = dec.lm.get_output_embeddings()(dec.hidden).float().masked_fill(plan.mask, float("-inf"))
        present = torch.zeros(vocab, dtype=torch.bool)
        present[prompt] = True
        want = filtered_probs(penalize(logits, present, s.repetition_penalty), s)[allowed]
    assert ((want > 0).sum() < len(allowed)) == (top_p < 1)
    n = 4000
    got = torch.tensor([row[0][0] for row in sample_rows(dec, plan, 1, n)])
    freq = torch.tensor([(got == a).float().mean().item() for a in allowed])
    sigma = (want * (1 - want) / n).sqrt()
    assert torch.all((freq - want).abs() <= 4 * sigma + 1e-9), (freq, want)
    assert torch.all(freq[want == 0] == 0)
    assert dec.pos == len(prompt)  # the decoder itself is left as it was


@pytest.mark.parametrize("fuse", [True, False])
def test_rows_stop_on_their_own_and_patience_cuts_the_stragglers(fuse):
    """Each row ends at its own stop token (returned without it); with ``patience`` 1.0 the batch ends as
    soon as half the rows have stopped, the rest cut at that length and marked unfinished."""
    from engine.semantic.batch_decoding import sample_rows

    vocab = 600
    s = SamplingConfig(temperature=3.0, top_p=1.0, repetition_penalty=1.0, seed=11)
    allowed, stops = list(range(300, 320)), [400, 401]
    dec = _decoder(s, vocab, fuse)
    dec.start([1, 5, 9])
    rows = sample_rows(dec, slot_plan(dec, vocab, allowed, stops), 200, 8)
    assert all(stopped for _, stopped in rows) and len({len(t) for t, _ in rows}) > 1
    assert all(set(t) <= set(allowed) for t, _ in rows)
    cut = sample_rows(dec, slot_plan(dec, vocab, allowed, stops), 200, 8, patience=1.0)
    ended = [t for t, stopped in cut if stopped]
    longest = max(len(t) for t in ended)
    assert 4 <= len(ended) < 8
    assert all(len(t) == longest + 1 for t, stopped in cut if not stopped)  # cut where the 4th row stopped


def test_demo_profile_speaks_the_best_of_sixteen_read_by_its_codec(tmp_path):
    """The demo profile attaches the demo codec's phoneme head; it reads a sampled candidate as its own
    text far better than as another sentence (the scores follow the words, not the length)."""
    from engine.pipeline import Engine

    cfg = load_config("demo", overrides=[f"paths.voices_dir={tmp_path}"])
    assert cfg.semantic.tts_candidates == 16 and cfg.semantic.tts_steer_every == 10
    engine = Engine(cfg)
    model = engine.semantic_for("tts")
    assert isinstance(model.selector, PhonemeSelector) and model.selector.symbols == engine.codec.phoneme_symbols
    assert any("best of up to 16 samples, steered every 10 units" in row.name for row in engine.status() if row.role == "semantic")  # the Status tab says so
    assert [model.candidates_for("x" * n) for n in (10, 60, 61, 120, 240, 1000)] == [16, 16, 15, 8, 4, 4]
    text, other = "The museum opens at nine in the morning.", "Please bring two green apples to school."
    candidates = model.speak_candidates(text, replace(cfg.semantic.sampling, seed=0), 3)
    own = model.selector.scores(text, candidates)
    wrong = model.selector.scores(other, candidates)
    assert all(0 <= a < 2.0 and a + 1.0 < b for a, b in zip(own, wrong)), (own, wrong)
    # steered, every row the batch ends with reads as the text about as plainly as the best unsteered one
    steered = model.selector.scores(text, model.speak_candidates(text, replace(cfg.semantic.sampling, seed=0), 4))
    assert len(steered) >= 2 and max(steered) < 0.3, steered
    # one sample by default, the head still attached: a request may ask for several
    one = Engine(load_config("demo", overrides=[f"paths.voices_dir={tmp_path}", "semantic.tts_candidates=1"])).semantic_for("tts")
    assert isinstance(one.selector, PhonemeSelector) and one.candidates_for(text) == 1


def test_best_of_n_script_table():
    """scripts/best_of_n.py's table: one sample, the mean, the phoneme head's pick of the first k, the oracle."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / "best_of_n.py"
    spec = importlib.util.spec_from_file_location("best_of_n", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    C = module.Candidate
    items = [[C(0, 50, 0.9, 4, 10, ""), C(1, 50, 0.2, 1, 10, ""), C(2, 50, 0.5, 0, 10, ""), C(3, 50, 0.1, 2, 10, "")],
             [C(0, 40, 0.3, 0, 10, ""), C(1, 40, 0.4, 3, 10, ""), C(2, 40, 0.6, 5, 10, ""), C(3, 40, 0.2, 1, 10, "")]]
    table = dict(module.wer_table(items))
    assert table["one sample (the first seed)"] == pytest.approx(20.0)
    assert table["mean of 4 samples"] == pytest.approx(100 * (7 / 4 + 9 / 4) / 20)
    assert table["phoneme head's pick of 2"] == pytest.approx(5.0)  # seeds 1 and 0
    assert table["phoneme head's pick of 4"] == pytest.approx(15.0)  # seeds 3 and 3
    assert table["Whisper's own pick of 4 (oracle)"] == pytest.approx(0.0)


def test_chat_reply_speech_samples_as_configured(tmp_path):
    """The spoken reply of a written-reply chat passes its sample count to the TTS model (demo: one
    streamed sample; 0 = as TTS)."""
    from types import SimpleNamespace

    from engine.semantic.history import Conversation
    from engine.semantic.reply_writer import WrittenReplyChat

    asked = []

    class Tts:
        def stream_speak(self, text, sampling, candidates=None):
            asked.append((text, candidates))
            yield [1, 2, 3]

    writer = SimpleNamespace(name="w", cfg=SimpleNamespace(history_turns=0), stream=lambda past, text, seed=None: iter(["Paris is big. ", "Yes."]))
    for candidates in (1, None, 8):
        asked.clear()
        list(WrittenReplyChat(None, writer, Tts(), candidates=candidates).stream_respond(Conversation(), "Tell me.", SAMPLING))
        assert asked == [("Paris is big.", candidates), ("Yes.", candidates)]
    assert load_config("demo").semantic.reply_candidates == 1


def test_a_request_asks_for_its_own_number_of_samples(tmp_path, monkeypatch):
    """``GenerationOptions.candidates`` replaces the profile's ``tts_candidates`` for one request (a long
    sentence still gets fewer); 1 is one streamed sample; more than one without a phoneme head says why;
    the CLI and the page pass it through."""
    import numpy as np

    from app.ui import UI
    from engine.cli._tasks import add_generation_args, options_from_args
    from engine.errors import EngineError
    from engine.pipeline import MAX_CANDIDATES, Engine, GenerationOptions
    from tests.audio_helpers import voiced

    for bad in (0, MAX_CANDIDATES + 1, 2.5, True):
        with pytest.raises(EngineError, match="samples per sentence"):
            GenerationOptions(candidates=bad).validated()
    engine = Engine(load_config("tiny", overrides=[f"paths.voices_dir={tmp_path}"]))
    voice = (16000, voiced(2.0, sr=16000, f0=150))
    model = engine.semantic_for("tts")
    asked, real = [], model.stream_speak

    def spy(text, sampling=None, instruction=0, candidates=None):
        asked.append((text, candidates))
        return real(text, sampling, instruction, candidates=1)  # the tiny codec has no head: one sample each

    assert engine.tts("Hello there.", voice, options=GenerationOptions(seed=0, candidates=1)).wav.size > 0  # no head needed for one
    with pytest.raises(ModelUnavailableError, match="phoneme head"):  # the tiny codec (SpeechTokenizer's) cannot choose
        engine.tts("Hello there.", voice, options=GenerationOptions(seed=0, candidates=3))
    model.selector = PhonemeSelector(lambda t: torch.zeros(t.shape[0], t.shape[1], 3).log_softmax(-1), ["a", "b"])
    monkeypatch.setattr(model, "stream_speak", spy)
    model.cfg = replace(model.cfg, tts_candidates_chars=20, tts_candidates_min=2)
    long = "This sentence is a good deal longer than twenty characters."
    for asked_for, want in ((None, None), (1, 1), (6, 6), (32, 32)):
        asked.clear()
        for text in ("Hello there.", long):
            wav = engine.tts(text, voice, options=GenerationOptions(seed=0, candidates=asked_for)).wav
            assert np.isfinite(wav).all() and wav.size > 0
        assert asked == [("Hello there.", want), (long, None if want is None else model.candidates_for(long, want))]
    assert model.candidates_for(long, 6) == 2 and model.candidates_for(long, 32) == 10

    parser = __import__("argparse").ArgumentParser()
    add_generation_args(parser)
    parser.add_argument("--candidates", type=int, default=None)
    assert options_from_args(parser.parse_args(["--voice", "v", "--out", "o.wav", "--candidates", "4"])).candidates == 4
    assert UI.options(candidates=5.0).candidates == 5 and UI.options().candidates is None
    with pytest.raises(Exception, match="samples per sentence"):
        UI.options(candidates=0)


def test_best_of_n_data_mixes_the_picks_into_the_training_records(tmp_path):
    """scripts/best_of_n_data.py's mix: each pick ``repeat`` times under one id (one side of the
    train/valid split), a draw of the original records, nothing else; picks of another codec or text
    front end are refused."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / "best_of_n_data.py"
    spec = importlib.util.spec_from_file_location("best_of_n_data", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pick = {"task": "tts", "id": "pick-0", "prompt": "p", "response": " <sosp><1><eosp>", "text_units": "phonemes", "codec": "demo-v3",
            "text": "t", "score": 0.1, "score_median": 0.5}
    picks, data, out = tmp_path / "picks.jsonl", tmp_path / "data.jsonl", tmp_path / "mixed.jsonl"
    picks.write_text("".join(json.dumps({**pick, "prompt": f"p{i}"}) + "\n" for i in range(3)))
    base = [{"task": t, "id": f"u{i}", "prompt": "q", "response": "r", "text_units": "phonemes", "codec": "demo-v3"} for i in range(10) for t in ("tts", "asr")]
    data.write_text("".join(json.dumps(r) + "\n" for r in base))
    assert "3 picks x 2 + 5 records" in module.mix(picks, data, out, repeat=2, original=5, seed=0)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    mine = [r for r in rows if r["id"].startswith("pick")]
    assert len(rows) == 11 and sorted(r["prompt"] for r in mine) == ["p0", "p0", "p1", "p1", "p2", "p2"]
    assert {r["id"] for r in mine if r["prompt"] == "p1"} == {"pick1"} and all("score" not in r for r in mine)
    assert all(r in base for r in rows if not r["id"].startswith("pick"))
    data.write_text(json.dumps({**base[0], "codec": "demo-v2"}) + "\n")
    with pytest.raises(SystemExit, match="demo-v2"):
        module.mix(picks, data, out, repeat=1, original=0, seed=0)
