"""Several samples of one slot in one batch, after a ``StaticDecoder``'s prefill.

Best-of-N speech (``semantic.tts_candidates``, engine.semantic.selection) needs N continuations of the
same prompt. Sampled one after another they cost N times one reply; in one batch the N rows share
the prompt's KV cache (copied once) and every step's weights, so on a CPU a step of 8 rows of the
demo model costs little more than a step of one (a step is bound by the number of operations and
by reading the weights, not by arithmetic). All rows sit at the same position, so RoPE and the
attention span are shared too.

The arithmetic is ``StaticDecoder``'s (its fused weight copies where it has them, else the model's
own modules), so a row draws from the same distribution as a reply of ``StaticDecoder.sample``
would; sampling (temperature, top-p by an exponential race, repetition penalty from per-row token
counts) runs on the device. A row that samples a stop token is finished: it keeps stepping with the
others (its results ignored) until every row has stopped or the limit is reached.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.semantic.decoding import SlotPlan, StaticDecoder, _rotate_half, penalize
from engine.semantic.steering import RowGuide

__all__ = ["sample_rows"]

_NUCLEUS = 64  # top-p: look for the kept tokens among this many first (a full sort when they hold less than top_p)


@torch.inference_mode()
def sample_rows(dec: StaticDecoder, plan: SlotPlan, limit: int, rows: int, patience: float | None = None,
                guide: RowGuide | None = None) -> list[tuple[list[int], bool]]:
    """``rows`` independent samples of one slot from ``dec``'s current state (after ``start`` / ``feed``;
    ``dec`` itself is left as it was): per row (tokens without the stop, stopped?). Uses ``dec``'s
    sampling settings and generator. ``patience``: once half the rows have stopped (after s steps), the
    others get until step ``patience`` x s to stop, then are cut off (stopped False): a row that runs on
    far longer than its siblings is looping, and would hold up the whole batch. ``guide``
    (engine.semantic.steering) follows every row's tokens, and every ``guide.every`` steps may have
    rows continue from others (their tokens, repetition counts and KV cache copied)."""
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    assert dec.hidden is not None and dec.counts is not None, "prefill the decoder first (start / feed)"
    start = dec.pos
    end_max = min(start + max(limit, 0) + 1, dec.max_len)
    cache_shape = (len(dec.layers), rows, dec.kv_heads, end_max, dec.head_dim)
    k_cache = torch.empty(cache_shape, dtype=dec.k_cache.dtype, device=dec.device)
    v_cache = torch.empty_like(k_cache)
    k_cache[:, :, :, :start] = dec.k_cache[:, :, :, :start]  # the prompt's cache, broadcast to every row
    v_cache[:, :, :, :start] = dec.v_cache[:, :, :, :start]
    weights = _float_weights(dec)
    if plan.head_weight is not None:  # the slot's output rows in the stream's dtype, widened once
        plan = replace(plan, head_weight=plan.head_weight.to(dec.dtype),
                       head_bias=None if plan.head_bias is None else plan.head_bias.to(dec.dtype))
    hidden = dec.hidden.expand(rows, -1)  # [R, D]
    counts = dec.counts.expand(rows, -1).clone()  # [R, V]
    stop_ids = plan.stop_ids if plan.stop_ids is not None else torch.tensor(sorted(plan.stops), dtype=torch.long, device=dec.device)
    tokens = torch.empty(rows, max(limit, 0), dtype=torch.long, device=dec.device)  # [R, limit]
    done = torch.zeros(rows, dtype=torch.bool, device=dec.device)
    pos = start
    deadline = limit
    taken = 0
    for step in range(max(limit, 0)):
        token = _draw(dec, plan, hidden, counts)  # [R]
        tokens[:, step] = token
        taken = step + 1
        done |= torch.isin(token, stop_ids)
        if guide is not None:
            guide.advance(token, ~done)
            index = guide.resample(~done, dec.gen) if taken % guide.every == 0 else None
            if index is not None:  # rows continue from their ancestors: history, counts and cache
                moved = (index != torch.arange(rows, device=index.device)).nonzero()[:, 0]  # rows that change
                source = index[moved]
                tokens[moved, :taken] = tokens[source, :taken]
                token = tokens[:, step]
                counts[moved] = counts[source]
                k_cache[:, moved, :, start:pos] = k_cache[:, source, :, start:pos]  # the prompt's part is every row's
                v_cache[:, moved, :, start:pos] = v_cache[:, source, :, start:pos]
        finished = int(done.sum())
        if patience is not None and deadline == limit and 2 * finished >= rows:
            deadline = min(limit, max(step + 1, int(patience * (step + 1))))
        if step + 1 >= deadline or pos >= end_max or finished == rows:
            break
        counts.scatter_add_(1, token[:, None], torch.ones(rows, 1, dtype=counts.dtype, device=counts.device))
        hidden = _step(dec, weights, token, pos, k_cache, v_cache)
        pos += 1
    table = tokens[:, :taken].tolist()  # [R, steps] (only the stop count is read per step)
    stops = set(plan.stops)
    out = []
    for row in table:
        cut = next((i for i, t in enumerate(row) if t in stops), None)
        out.append((row if cut is None else row[:cut], cut is not None))
    return out


def _float_weights(dec: StaticDecoder) -> list[tuple[Tensor, Tensor, Tensor, Tensor]] | None:
    """The fused projections in the residual stream's dtype (float16 copies widened once per call: a
    matrix product over several rows in float16 is slow on a CPU), or None without fused layers."""
    fl = dec.fused
    if fl is None:
        return None
    return [tuple(w.to(dec.dtype) for w in (f.qkv, f.o, f.gate_up, f.down)) for f in fl.layers]  # type: ignore[misc]


def _draw(dec: StaticDecoder, plan: SlotPlan, hidden: Tensor, counts: Tensor) -> Tensor:
    """The next token of every row [R] from hidden [R, D] (``StaticDecoder._draw`` row by row)."""
    s = dec.sampling
    if plan.head_weight is not None:
        logits = F.linear(hidden, plan.head_weight, plan.head_bias).float()
        present = counts[:, plan.allowed] > 0
    else:
        logits = dec.lm.get_output_embeddings()(hidden).float().masked_fill(plan.mask, float("-inf"))
        present = counts > 0
    logits = penalize(logits, present, s.repetition_penalty)
    if s.temperature <= 0 or s.top_p <= 0:
        index = logits.argmax(-1)
    else:
        probs = torch.softmax(logits / s.temperature, dim=-1)  # the race of StaticDecoder._race, per row
        if s.top_p >= 1.0:
            index = (probs / torch.empty_like(probs).exponential_(1.0, generator=dec.gen)).argmax(-1)
        else:
            ranked, order = probs.topk(min(_NUCLEUS, probs.shape[-1]), dim=-1)  # the nucleus is usually among the most likely few
            if not bool((ranked.sum(-1) >= s.top_p).all()):
                ranked, order = probs.sort(dim=-1, descending=True)
            kept = ranked * ((ranked.cumsum(-1) - ranked) < s.top_p)  # the first always stays
            index = order.gather(1, (kept / torch.empty_like(kept).exponential_(1.0, generator=dec.gen)).argmax(-1, keepdim=True))[:, 0]
    token = plan.allowed[index] if plan.allowed is not None else index
    if plan.eos_to is not None and dec.eos_id is not None and dec.eos_id not in plan.stops:
        token = torch.where(token == dec.eos_id, torch.full_like(token, plan.eos_to), token)
    return token


def _step(dec: StaticDecoder, weights, token: Tensor, pos: int, k_cache: Tensor, v_cache: Tensor) -> Tensor:
    """Feed one token per row [R] at position ``pos`` -> final-norm hidden [R, D]; writes the rows' caches."""
    rows = token.shape[0]
    heads, kv, dh = dec.heads, dec.kv_heads, dec.head_dim
    x = dec.lm.model.embed_tokens(token[:, None])  # [R, 1, D]
    end = pos + 1

    def attend(i: int, q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:
        """q [R, H, 1, dh]; k, v [R, KV, 1, dh] written at ``pos`` -> [R, 1, H dh]."""
        k_cache[i, :, :, pos : pos + 1] = k
        v_cache[i, :, :, pos : pos + 1] = v
        out = F.scaled_dot_product_attention(q, k_cache[i, :, :, :end], v_cache[i, :, :, :end], scale=scale, enable_gqa=kv != heads)
        return out.transpose(1, 2).reshape(rows, 1, heads * dh)

    fl = dec.fused
    if fl is not None:
        qk = (heads + kv) * dh
        for i, (f, (w_qkv, w_o, w_gate_up, w_down)) in enumerate(zip(fl.layers, weights)):
            out = F.linear(fl.norm(x, f.input_norm), w_qkv)  # [R, 1, (H + 2 KV) dh]
            both = out[..., :qk].view(rows, 1, heads + kv, dh)
            if dec.rot is not None:  # rows interleaved in rotary pairs (FusedLayers.interleave_rope)
                both = torch.view_as_real(torch.view_as_complex(both.unflatten(-1, (-1, 2))) * dec.rot[pos]).flatten(-2)
            else:
                cos, sin = dec.cos[pos].view(1, 1, 1, dh), dec.sin[pos].view(1, 1, 1, dh)
                both = both * cos + _rotate_half(both) * sin
            q, k = both[:, :, :heads].transpose(1, 2), both[:, :, heads:].transpose(1, 2)
            v = out[..., qk:].view(rows, 1, kv, dh).transpose(1, 2)
            x = x + F.linear(attend(i, q, k, v, f.scale), w_o)
            gate, up = F.linear(fl.norm(x, f.post_norm), w_gate_up).chunk(2, dim=-1)
            x = x + F.linear(f.act(gate) * up, w_down)
        return fl.norm(x, fl.final_norm)[:, 0]
    cos, sin = dec.cos[pos].view(1, 1, 1, dh), dec.sin[pos].view(1, 1, 1, dh)
    for i, layer in enumerate(dec.layers):
        attn = layer.self_attn
        h = layer.input_layernorm(x)
        q = attn.q_proj(h).view(rows, 1, heads, dh).transpose(1, 2)
        k = attn.k_proj(h).view(rows, 1, kv, dh).transpose(1, 2)
        v = attn.v_proj(h).view(rows, 1, kv, dh).transpose(1, 2)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        x = x + attn.o_proj(attend(i, q, k, v, attn.scaling))
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    return dec.lm.model.norm(x)[:, 0]
