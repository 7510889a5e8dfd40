"""The static-KV-cache decoder gives the eager loop's greedy tokens and draws from its distribution."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from engine.semantic.config import SamplingConfig, SemanticConfig
from engine.semantic.decoding import EagerDecoder, StaticDecoder, filtered_probs, penalize
from engine.semantic.history import Conversation
from engine.semantic.model import SemanticModel
from tests.semantic_helpers import save_ours, slot_plan, tiny_llama

GREEDY = SamplingConfig(temperature=0, repetition_penalty=1.05, max_new_tokens=60, seed=0)


def _both(family: str, **cfg) -> tuple[SemanticModel, SemanticModel]:
    config = SemanticConfig(random_init=True, family=family, max_text_tokens=12, unit_chunk=7, **cfg)
    return SemanticModel.tiny(replace(config, decoder="eager")), SemanticModel.tiny(replace(config, decoder="static"))


@pytest.mark.parametrize("family", ["anygpt", "speechgpt_gen"])
def test_static_decoder_gives_the_eager_greedy_tokens(family):
    eager, static = _both(family)
    assert eager.speak("Good morning to you", GREEDY) == static.speak("Good morning to you", GREEDY)
    assert list(eager.stream_speak("Hi", GREEDY)) == list(static.stream_speak("Hi", GREEDY))
    for user in ("hello there", [5, 6, 7, 8]):
        a, b = eager.respond(Conversation(), user, GREEDY), static.respond(Conversation(), user, GREEDY)
        assert (a.transcript, a.text, a.units, a.warnings) == (b.transcript, b.text, b.units, b.warnings)
    assert isinstance(static._static, StaticDecoder) and static._static.compiled is False


def _decoders(vocab: int = 4000, sync_every: int = 1):
    model = tiny_llama(vocab, seed=3).eval()
    return model, EagerDecoder(model, torch.device("cpu"), GREEDY, eos_id=2), StaticDecoder(model, max_len=256, sync_every=sync_every)


@pytest.mark.parametrize("sync_every", [1, 5])
def test_static_decoder_sub_vocabulary_and_batched_syncs_match_eager(sync_every):
    """A speech-like slot (a few hundred allowed ids of 4000: only their output rows are computed),
    a stop found in the middle of a batch of device-side tokens (the cache rewinds), fixed text fed
    after it and a second slot: the same tokens as the eager loop."""
    vocab = 4000
    model, eager, static = _decoders(vocab, sync_every)
    static.reset(GREEDY, eos_id=2, vocab=vocab)
    prompt = [1, 17, 99, 3000, 45, 7]
    allowed = list(range(500, 800))
    eager.start(prompt)
    free = list(eager.sample(slot_plan(eager, vocab, allowed, []), 12))  # where the greedy path goes
    stop = free[6]  # a token the greedy path reaches at step 7: a stop in the middle of a batch
    allowed = [a for a in allowed if a != stop]
    runs = []
    for dec in (EagerDecoder(model, torch.device("cpu"), GREEDY, eos_id=2), static):
        dec.start(prompt)
        plan = slot_plan(dec, vocab, allowed, [stop])
        first = list(dec.sample(plan, 40))
        dec.feed([11, 12])
        second = list(dec.sample(slot_plan(dec, vocab, list(range(100, 400)), [3999]), 15))
        runs.append((first, second))
    assert plan.head_weight is not None and plan.head_weight.shape[0] == len(allowed) + 1
    assert runs[0] == runs[1]
    assert runs[0][0][-1] == stop and len(runs[0][0]) < 40


def test_static_decoder_logits_match_the_model():
    """Prefill then one-token steps through the static cache give the transformers model's logits."""
    vocab = 500
    model, _, static = _decoders(vocab)
    static.reset(GREEDY, eos_id=2, vocab=vocab)
    ids = [1, 5, 9, 200, 33, 48, 7, 7, 300]
    with torch.inference_mode():
        want = model(input_ids=torch.tensor([ids])).logits[0]
        static.start(ids[:4])
        got = [model.lm_head(static.hidden)]
        for token in ids[4:]:
            static.feed([token])
            got.append(model.lm_head(static.hidden))
    torch.testing.assert_close(torch.stack(got), want[3:], atol=1e-5, rtol=1e-5)


def _hidden_states(dec: StaticDecoder, vocab: int, ids: list[int], prefill: int) -> torch.Tensor:
    """Final hidden states [len(ids) - prefill + 1, D]: a prefill of ``ids[:prefill]``, then one step per id."""
    with torch.inference_mode():
        dec.reset(GREEDY, eos_id=2, vocab=vocab)
        dec.start(ids[:prefill])
        states = [dec.hidden]
        for token in ids[prefill:]:
            dec.feed([token])
            states.append(dec.hidden)
    return torch.stack(states)


def test_fused_layers_give_the_module_path_logits():
    """On a CPU the layers run on fused weights (q/k/v in one projection, gate/up in one, one-call
    norms): the module path's hidden states; a hooked projection keeps the module path."""
    vocab = 500
    model, _, fused = _decoders(vocab)
    plain = StaticDecoder(model, max_len=256, fuse=False)
    assert fused.fused is not None and plain.fused is None
    ids = [1, 5, 9, 200, 33, 48, 7]
    hidden = [_hidden_states(dec, vocab, ids, prefill=3) for dec in (fused, plain)]
    torch.testing.assert_close(hidden[0], hidden[1], atol=1e-5, rtol=1e-5)
    handle = model.model.layers[0].mlp.up_proj.register_forward_hook(lambda *a: None)
    try:
        assert StaticDecoder(model, max_len=16).fused is None  # hooks must see the module calls
    finally:
        handle.remove()


def _halved(model):
    """The model's weights rounded to float16 values, kept in float32 (a float16 checkpoint on a CPU)."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.float16).float())
    return model


def test_float16_projections_only_where_the_weights_are_float16_values():
    """half_matmul auto: float16 copies of the fused projections (and the slot's output rows) when
    every weight is exactly a float16 value; the hidden states stay within float16 rounding of the
    float32 path, the projections of a prefill run widened, the residual stream stays float32."""
    vocab = 500
    assert not StaticDecoder(tiny_llama(vocab, seed=3).eval(), max_len=64).fused.half  # random float32 weights: no
    model = _halved(tiny_llama(vocab, seed=3).eval())
    half, full = StaticDecoder(model, max_len=256), StaticDecoder(model, max_len=256, half=False)
    assert half.fused.half and half.fused.layers[0].qkv.dtype == torch.float16 and not full.fused.half
    assert StaticDecoder(model, max_len=64, fuse=False).fused is None  # the module path is never halved
    ids = [1, 5, 9, 200, 33, 48, 7, 7, 300]
    hidden = [_hidden_states(dec, vocab, ids, prefill=4) for dec in (half, full)]
    assert hidden[0].dtype == torch.float32
    torch.testing.assert_close(hidden[0], hidden[1], atol=2e-2, rtol=2e-2)
    assert not torch.equal(hidden[0], hidden[1])  # the float16 products did run
    plan = slot_plan(half, vocab, list(range(100, 300)), [400])
    assert plan.head_weight.dtype == torch.float16
    half.reset(GREEDY, eos_id=2, vocab=vocab)
    full.reset(GREEDY, eos_id=2, vocab=vocab)
    half.start(ids)
    full.start(ids)
    a = list(half.sample(plan, 20))
    b = list(full.sample(slot_plan(full, vocab, list(range(100, 300)), [400]), 20))
    assert len(a) == len(b) == 20 and sum(x == y for x, y in zip(a, b)) >= 15  # greedy paths agree but for near-ties


def test_half_matmul_setting_reaches_the_decoder():
    from engine.semantic.decoding import make_decoder

    model = _halved(tiny_llama(50))
    assert make_decoder("auto", model, 64, "off", 1, "auto", "auto").fused.half
    assert not make_decoder("auto", model, 64, "off", 1, "auto", "off").fused.half
    assert make_decoder("auto", tiny_llama(50), 64, "off", 1, "auto", "on").fused.half  # forced
    with pytest.raises(ValueError, match="semantic.half_matmul"):
        make_decoder("auto", model, 64, "off", 1, "auto", "maybe")


@pytest.mark.parametrize("top_p", [0.8, 1.0])
def test_sampling_distribution_is_the_eager_one(top_p):
    """Temperature, top-p and the repetition penalty shape the static decoder's draws exactly as the
    eager loop's: the frequencies of both match the filtered probabilities (with top-p the static
    decoder's race runs over the sorted, unnormalised kept probabilities)."""
    vocab = 4000
    s = SamplingConfig(temperature=0.05, top_p=top_p, repetition_penalty=3.0, seed=5)
    model, _, static = _decoders(vocab)
    static.reset(s, eos_id=2, vocab=vocab)
    allowed = list(range(600, 606))
    prompt = [1, 601, 604, 9]  # two of the allowed ids are in the history: penalised
    eager = EagerDecoder(model, torch.device("cpu"), s, eos_id=2)
    eager.start(prompt)
    static.start(prompt)
    plan = slot_plan(static, vocab, allowed, [])
    with torch.inference_mode():
        logits = eager.logits.float().masked_fill(plan.mask, float("-inf"))
        present = torch.zeros(vocab, dtype=torch.bool)
        present[prompt] = True
        want = filtered_probs(penalize(logits, present, s.repetition_penalty), s)[allowed]
        assert ((want > 0).sum() < len(allowed)) == (top_p < 1)  # top-p removed some
        n = 4000
        got = torch.stack([static._draw(plan) for _ in range(n)]).flatten()
    freq = torch.tensor([(got == a).float().mean().item() for a in allowed])
    sigma = (want * (1 - want) / n).sqrt()
    assert torch.all((freq - want).abs() <= 4 * sigma + 1e-9), (freq, want)
    assert torch.all(freq[want == 0] == 0)
    from engine.semantic.decoding import sample_next

    gen = torch.Generator().manual_seed(1)
    history = torch.tensor(prompt)
    eager_draws = torch.tensor([sample_next(logits, history, s, gen) for _ in range(n)])
    eager_freq = torch.tensor([(eager_draws == a).float().mean().item() for a in allowed])
    assert torch.all((eager_freq - want).abs() <= 4 * sigma + 1e-9), (eager_freq, want)


def test_four_bit_model_runs_the_static_decoder(tmp_path):
    """A 4-bit NF4 model (bitsandbytes on CPU) decodes with the static cache (its quantized layers are
    called as modules) to the same greedy tokens as the eager loop."""
    pytest.importorskip("bitsandbytes")
    folder = save_ours(tmp_path / "llm", "speechgpt_gen")
    cfg = SemanticConfig(path=str(folder), family="speechgpt_gen", quant="4bit", max_text_tokens=10)
    eager = SemanticModel.from_pretrained(str(folder), replace(cfg, decoder="eager"))
    static = SemanticModel.from_pretrained(str(folder), replace(cfg, decoder="static"))
    assert any("4bit" in type(m).__name__ for m in static.model.modules())
    sampling = replace(GREEDY, max_new_tokens=30)
    assert eager.speak("hello world", sampling) == static.speak("hello world", sampling)
    assert isinstance(static._static, StaticDecoder) and not static._static.compiled


def test_unknown_decoder_settings_are_refused():
    model = SemanticModel.tiny(SemanticConfig(random_init=True, decoder="fast"))
    with pytest.raises(ValueError, match="semantic.decoder"):
        model.speak("hi", GREEDY)


def test_overlapping_replies_do_not_share_the_static_cache():
    """A reply started while another is still streaming decodes on its own (eagerly): both come out
    as they do alone."""
    _, model = _both("speechgpt_gen")
    alone_a = model.speak("first text", GREEDY)
    alone_b = model.speak("another one", GREEDY)
    stream_a = model.stream_speak("first text", GREEDY)
    head = next(stream_a)
    during = model.speak("another one", GREEDY)
    rest = [u for chunk in stream_a for u in chunk]
    assert head + rest == alone_a and during == alone_b
    assert model.speak("another one", GREEDY) == alone_b and not model._slot.lock.locked()


def test_other_architectures_use_the_eager_loop():
    """A causal LM the static decoder does not know is decoded eagerly with decoder auto, refused with static."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from engine.semantic.decoding import make_decoder, supports_static

    model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=64, n_embd=32, n_layer=1, n_head=2)).eval()
    assert "gpt2" in supports_static(model)
    assert make_decoder("auto", model, 64, "off", 1) is None
    with pytest.raises(ValueError, match="semantic.decoder static cannot run"):
        make_decoder("static", model, 64, "off", 1)
    assert isinstance(make_decoder("auto", tiny_llama(50), 64, "off", 1), StaticDecoder)


def test_fuse_setting_reaches_the_decoder():
    from engine.semantic.decoding import make_decoder

    model = tiny_llama(50)
    assert make_decoder("auto", model, 64, "off", 1, "auto").fused is not None  # CPU: fused
    assert make_decoder("auto", model, 64, "off", 1, "off").fused is None
    with pytest.raises(ValueError, match="semantic.fuse"):
        make_decoder("auto", model, 64, "off", 1, "sometimes")
    eager, fused = _both("speechgpt_gen")
    unfused = SemanticModel.tiny(SemanticConfig(random_init=True, family="speechgpt_gen", max_text_tokens=12, unit_chunk=7, fuse="off"))
    assert fused.speak("Good morning", GREEDY) == unfused.speak("Good morning", GREEDY) == eager.speak("Good morning", GREEDY)
    assert fused._static.fused is not None and unfused._static.fused is None


def test_tts_length_cap_follows_the_text():
    """semantic.tts_units_per_char: at most base + per-char x len(text) units, whatever the budget."""
    sampling = replace(GREEDY, max_new_tokens=200, repetition_penalty=1.0)
    free = SemanticModel.tiny(SemanticConfig(random_init=True, family="speechgpt_gen", unit_chunk=7))
    capped = SemanticModel.tiny(SemanticConfig(random_init=True, family="speechgpt_gen", unit_chunk=7, tts_units_per_char=1.5, tts_units_base=4))
    text = "abcdefgh"
    uncapped = free.speak(text, sampling)
    assert len(uncapped) > 4 + 12  # the random model runs on: the cap has something to cut
    units = capped.speak(text, sampling)
    assert len(units) <= 4 + 12 and units == uncapped[: len(units)]  # the same units, cut at the cap
