"""Steering a batch of TTS samples while they are sampled: sequential Monte Carlo with the phoneme head.

Best of N (engine.semantic.selection) samples N whole unit sequences and keeps the one the codec's
phoneme head reads as the text best. A word lost anywhere spoils a whole sample, so the chance that
some sample is clean falls fast with the sentence's length. ``CtcSteering`` looks at the rows while
they are sampled instead: it keeps, unit by unit, the CTC forward variables of the text's phonemes
under the head for every row, so ``log p_t`` = the probability that a row's units so far spell *some
prefix* of the text (the forward variables summed over the prefix lengths). Every ``every`` units
it weighs the rows by how much ``log p`` changed since the last resampling (weights
softmax(``sharpness`` x change)); when the weights have become uneven (effective sample size below
three quarters of the rows still going) it resamples them (systematic resampling): a row that has
just skipped, slurred or repeated a word is replaced by a copy of one that has not, and the copies
then sample on independently. This is sequential Monte Carlo with the head's prefix probability as the twisting
function (target: the model's distribution reweighted by the head's reading of the text); never
resampling is plain best of N. The final choice among the rows that ended is still the selector's
(the whole text's CTC loss per phoneme).

Cost: a few vector operations over [rows, 2 x phonemes + 1] per unit, and when rows are resampled a
copy of the changed rows' KV cache (``engine.semantic.batch_decoding.sample_rows`` does that part).
"""

from __future__ import annotations

from typing import Protocol, Sequence

import torch
from torch import Tensor

__all__ = ["CtcSteering", "RowGuide"]

_NEG = float("-inf")


class RowGuide(Protocol):
    """What ``sample_rows`` asks of a guide: follow every row's new token, and every ``every`` steps
    say which row each row continues from (None: leave the rows as they are)."""

    every: int

    def advance(self, token: Tensor, live: Tensor) -> None: ...

    def resample(self, live: Tensor, generator: torch.Generator | None) -> Tensor | None: ...


class CtcSteering:
    """CTC prefix probabilities of one text's phonemes for a batch of unit rows, and their resampling."""

    def __init__(self, unit_log_probs: Tensor, target: Sequence[int], token_units: Tensor, rows: int,
                 every: int = 10, sharpness: float = 1.0, min_ess: float = 0.75):
        """``unit_log_probs``: the head's CTC log-probabilities of every unit [U, symbols + 1] (blank 0);
        ``target``: the text's phoneme ids (1..symbols); ``token_units``: for every token id of the
        language model its unit (0..U-1) or -1; ``rows``: the batch; ``every``: units between looks;
        ``sharpness``: the weights' inverse temperature; ``min_ess``: resample when the effective
        sample size falls below this share of the rows still going."""
        if not target:
            raise ValueError("no phonemes to steer towards")
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        device = token_units.device
        ext = [0]
        for p in target:  # blank, y1, blank, y2, ..., yL, blank: S = 2L + 1 states
            ext += [int(p), 0]
        ext_t = torch.tensor(ext, dtype=torch.long, device=device)
        table = unit_log_probs.to(device=device, dtype=torch.float32)[:, ext_t]  # [U, S]
        self.table = torch.cat([table, torch.zeros(1, len(ext), device=device)])  # row U: a token that is no unit (left out)
        self.none = table.shape[0]
        prev2 = torch.cat([ext_t.new_full((2,), -1), ext_t[:-2]])
        self.skip = (ext_t != 0) & (ext_t != prev2)  # [S] a state that may be reached from two states back
        self.token_units = torch.where(token_units < 0, self.none, token_units).long()
        self.alpha = torch.full((rows, len(ext)), _NEG, device=device)  # [R, S] log forward variables
        self.alpha[:, 0] = 0.0  # before the first unit: the empty prefix, so the first update gives alpha_1 exactly
        self.mark = torch.zeros(rows, device=device)  # log p at the last resampling
        self.every, self.sharpness, self.min_ess = int(every), float(sharpness), float(min_ess)

    def advance(self, token: Tensor, live: Tensor) -> None:
        """One more token per row [R]; rows with ``live`` False (ended), or given a token that is no unit,
        keep their variables."""
        a = self.alpha
        one = torch.nn.functional.pad(a, (1, 0), value=_NEG)[:, :-1]  # from the state before
        two = torch.nn.functional.pad(a, (2, 0), value=_NEG)[:, :-2].masked_fill(~self.skip, _NEG)  # from two before
        n = len(self.token_units)
        unit = torch.where(token < n, self.token_units[token.clamp(0, n - 1)], self.none)  # a stop token is no unit
        new = torch.logaddexp(torch.logaddexp(a, one), two) + self.table[unit]  # [R, S]
        self.alpha = torch.where((live & (unit != self.none))[:, None], new, a)

    def prefix_log_prob(self) -> Tensor:
        """log p(the units so far spell a prefix of the text) per row [R]."""
        return torch.logsumexp(self.alpha, dim=-1)

    def complete_log_prob(self) -> Tensor:
        """log p(the units so far spell the whole text) per row [R] (minus the CTC loss)."""
        return torch.logaddexp(self.alpha[:, -1], self.alpha[:, -2])

    def weights(self, live: Tensor) -> Tensor:
        """Normalised weights of the rows still going [R] (0 for the others)."""
        gain = (self.prefix_log_prob() - self.mark) * self.sharpness
        gain = gain.masked_fill(~live, _NEG)
        return torch.softmax(gain, dim=0) if bool(live.any()) else torch.zeros_like(gain)

    def resample(self, live: Tensor, generator: torch.Generator | None = None) -> Tensor | None:
        """Which row each row continues from [R] (ended rows: themselves), or None when the live rows'
        weights are still even enough; the guide's own state follows the new order."""
        n = int(live.sum())
        if n < 2:
            return None
        w = self.weights(live)
        if not bool(torch.isfinite(w).all()) or float(1.0 / (w * w).sum()) >= self.min_ess * n:
            return None  # even enough (or no row can spell the text any more: nothing to prefer)
        rows = live.nonzero()[:, 0]  # [n]
        cum = w[rows].cumsum(0)
        u = (torch.rand(1, generator=generator).to(cum.device) + torch.arange(n, device=cum.device)) / n
        picks = rows[torch.searchsorted(cum, u * cum[-1]).clamp(max=n - 1)]  # [n] ancestors, ascending
        index = torch.arange(len(live), device=live.device)
        index[rows] = _keep_in_place(rows, picks)
        self.alpha = self.alpha[index]
        self.mark = self.prefix_log_prob()
        return index


def _keep_in_place(rows: Tensor, picks: Tensor) -> Tensor:
    """Assign the ancestors ``picks`` to the slots ``rows`` so that a row drawn as its own ancestor
    stays where it is (fewer cache rows to copy; the rows are exchangeable, so the draw is unchanged)."""
    slots = rows.tolist()
    wanted = picks.tolist()
    out: dict[int, int] = {}
    rest = []
    for a in wanted:
        if a in slots and a not in out:
            out[a] = a
        else:
            rest.append(a)
    free = [s for s in slots if s not in out]
    out.update(zip(free, rest))
    return torch.tensor([out[s] for s in slots], dtype=torch.long, device=rows.device)
