"""Steered sampling (engine.semantic.steering): CTC prefix probabilities of a text's phonemes kept up to
date unit by unit, rows resampled by them, and ``sample_rows`` / ``speak_candidates`` following a guide."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from engine.semantic.config import SamplingConfig, SemanticConfig
from engine.semantic.model import SemanticModel
from engine.semantic.selection import PhonemeSelector
from engine.semantic.steering import CtcSteering
from tests.semantic_helpers import slot_plan
from tests.test_speech_candidates import _decoder

OFFSET = 3  # token id = unit + OFFSET in these tests; ids below it are no units


def _token_units(units: int) -> torch.Tensor:
    return torch.cat([torch.full((OFFSET,), -1), torch.arange(units)])


def _ctc(lp: torch.Tensor, target: list[int]) -> float:
    """log p(frames lp [T, V] spell exactly ``target``), by torch's CTC loss."""
    if not target:
        return float(lp[:, 0].sum())
    loss = F.ctc_loss(lp[:, None], torch.tensor([target]), torch.tensor([lp.shape[0]]), torch.tensor([len(target)]),
                      blank=0, reduction="sum", zero_infinity=False)
    return -float(loss)


def test_forward_variables_give_the_ctc_loss_and_every_prefix():
    """After each unit, log p(prefix) = log sum over l of p(the units spell the text's first l phonemes),
    and log p(complete) = minus torch's CTC loss (a repeated phoneme needs a blank between its two)."""
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(12, 5, generator=gen).mul(2).log_softmax(-1)  # [U, V]
    target = [1, 2, 2, 3]
    units = torch.randint(0, 12, (2, 11), generator=gen)
    guide = CtcSteering(table, target, _token_units(12), rows=2)
    live = torch.ones(2, dtype=torch.bool)
    for t in range(units.shape[1]):
        guide.advance(units[:, t] + OFFSET, live)
        for r in range(2):
            lp = table[units[r, : t + 1]]
            each = [_ctc(lp, target[:l]) for l in range(len(target) + 1)]
            want = torch.logsumexp(torch.tensor(each), 0).item()
            assert guide.prefix_log_prob()[r].item() == pytest.approx(want, abs=1e-4)
            complete = guide.complete_log_prob()[r].item()
            assert complete == pytest.approx(each[-1], abs=1e-4) if math.isfinite(each[-1]) else complete == -math.inf


def test_ended_rows_and_stop_tokens_leave_the_variables_alone():
    table = torch.randn(6, 4).log_softmax(-1)
    guide = CtcSteering(table, [1, 2], _token_units(6), rows=3)
    guide.advance(torch.tensor([3, 4, 5]), torch.ones(3, dtype=torch.bool))
    before = guide.alpha.clone()
    guide.advance(torch.tensor([5, 99, 4]), torch.tensor([True, False, True]))  # 99: a stop id past the table
    assert torch.equal(guide.alpha[1], before[1]) and not torch.equal(guide.alpha[0], before[0])
    stop = CtcSteering(table, [1, 2], _token_units(6), rows=1)
    stop.advance(torch.tensor([99]), torch.ones(1, dtype=torch.bool))  # a live row given no unit: unchanged
    assert stop.prefix_log_prob().item() == pytest.approx(0.0)
    with pytest.raises(ValueError, match="no phonemes"):
        CtcSteering(table, [], _token_units(6), rows=1)


def _one_hot_table(units: int = 8) -> torch.Tensor:
    """Unit u reads as symbol u % 4 (id u % 4 + 1), sure of it; units >= 4 are blank."""
    ids = torch.where(torch.arange(units) >= 4, 0, torch.arange(units) % 4 + 1)
    return F.one_hot(ids, 5).float().mul(8.0).log_softmax(-1)


def test_resampling_replaces_the_rows_that_lost_the_text():
    """Rows spelling a wrong phoneme are replaced by copies of rows that spell the text; the rows that
    survive keep their place, ended rows are never touched, and even weights leave the rows alone."""
    guide = CtcSteering(_one_hot_table(), [1, 2], _token_units(8), rows=5, every=1)
    live = torch.tensor([True, True, True, True, False])
    guide.advance(torch.tensor([0, 0, 3, 3, 3]) + OFFSET, live)  # rows 0, 1: "a" (the text's start); 2, 3: "d"
    index = guide.resample(live, torch.Generator().manual_seed(0))
    assert index is not None and index[0] == 0 and index[1] == 1 and index[4] == 4
    assert set(index[2:4].tolist()) <= {0, 1}
    assert torch.equal(guide.alpha[2], guide.alpha[index[2]])
    even = CtcSteering(_one_hot_table(), [1, 2], _token_units(8), rows=4, every=1)
    even.advance(torch.tensor([0, 0, 0, 0]) + OFFSET, torch.ones(4, dtype=torch.bool))
    assert even.resample(torch.ones(4, dtype=torch.bool)) is None


class _CopyRowZero:
    """A guide that, at its first look, has every live row continue from row 0."""

    def __init__(self, every: int):
        self.every, self.looks = every, 0

    def advance(self, token, live):
        pass

    def resample(self, live, generator):
        self.looks += 1
        if self.looks > 1:
            return None
        return torch.where(live, torch.zeros_like(live, dtype=torch.long), torch.arange(len(live)))


class _Never(_CopyRowZero):
    def resample(self, live, generator):
        self.looks += 1
        return None


def test_sample_rows_follows_the_guide():
    """A guide that never resamples changes nothing (same draws); one that copies row 0 at step 5 gives
    every row row 0's first 5 tokens, after which the rows sample apart again."""
    from engine.semantic.batch_decoding import sample_rows

    vocab = 600
    s = SamplingConfig(temperature=2.0, top_p=1.0, repetition_penalty=1.0, seed=11)
    allowed, stops = list(range(300, 340)), []  # no row ends early (an ended row is never copied over)
    dec = _decoder(s, vocab)
    dec.start([1, 5, 9])
    plan = slot_plan(dec, vocab, allowed, stops)
    plain = sample_rows(dec, plan, 30, 4)
    dec.reset(s, eos_id=2, vocab=vocab)
    dec.start([1, 5, 9])
    never = _Never(5)
    assert sample_rows(dec, plan, 30, 4, guide=never) == plain and never.looks >= 1
    copied = sample_rows(dec, plan, 30, 4, guide=_CopyRowZero(5))
    heads = {tuple(t[:5]) for t, _ in copied}
    assert len(heads) == 1
    assert len({tuple(t[5:12]) for t, _ in copied}) > 1


class _Head:
    """The phoneme head of tests/test_speech_candidates.py: unit u reads as u % 4 (id + 1), blank from 100."""

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        ids = torch.where(tokens >= 100, 0, tokens % 4 + 1)
        return F.one_hot(ids, 5).float().mul(8.0).log_softmax(-1)


def test_steered_candidates_spell_the_text_better_than_best_of_n():
    """With the same model and seed, steering every few units leaves candidates the head reads as the
    text far better than unsteered ones, on average and at best (a random model's units are blanks and
    wrong phonemes: the rows that say a wrong one are replaced)."""
    cfg = SemanticConfig(random_init=True, family="speechgpt_gen", tts_candidates=8)
    model = SemanticModel.tiny(cfg)
    sel = PhonemeSelector(_Head(), ["a", "b", "d", "x"], frontend=lambda text: "ab")
    model.selector = sel
    sampling = SamplingConfig(temperature=1.0, top_p=1.0, repetition_penalty=1.0, max_new_tokens=30, seed=3)
    plain = sel.scores("bad", model.speak_candidates("bad", sampling, 8))
    model.cfg = replace(cfg, tts_steer_every=3)
    steered_rows = model.speak_candidates("bad", sampling, 8)
    steered = sel.scores("bad", steered_rows)
    assert all(math.isfinite(x) for x in plain + steered)
    assert sum(steered) / 8 < sum(plain) / 8 - 1.0 and min(steered) <= min(plain) + 1e-6, (plain, steered)
    assert model.speak("bad", sampling) in steered_rows  # TTS speaks one of the steered candidates


def test_rows_that_can_no_longer_spell_the_text_are_left_as_they_are():
    """A head that rules the text out for every row gives no weights to resample by: no resampling."""
    table = torch.full((4, 3), float("-inf"))
    table[:, 0] = 0.0  # every unit reads as blank, and never as a phoneme
    guide = CtcSteering(table, [1, 2], _token_units(4), rows=3, every=1)
    live = torch.ones(3, dtype=torch.bool)
    guide.advance(torch.tensor([3, 4, 5]), live)
    assert guide.complete_log_prob().isneginf().all()
    table[:, 0] = float("-inf")  # and now nothing at all
    dead = CtcSteering(table, [1, 2], _token_units(4), rows=3, every=1)
    dead.advance(torch.tensor([3, 4, 5]), live)
    assert dead.prefix_log_prob().isneginf().all() and dead.resample(live) is None
