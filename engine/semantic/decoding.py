"""Decoders for the semantic LLM's reply loop (engine.semantic.model walks the scaffold with one).

Two implementations of one small interface (``start`` / ``feed`` / ``sample``):

* ``StaticDecoder`` (LLaMA-family models): a preallocated KV cache, a decode step of our own over
  the model's modules (so 4-bit NF4 layers work unchanged) that ``torch.compile`` can capture (CUDA
  graphs with ``mode="reduce-overhead"`` on a GPU; eager on CPU unless asked), sampling on the
  device (temperature, top-p, a repetition penalty from token counts kept up to date per token),
  slot plans (allowed tokens, the sub-matrix of the output layer for them) built once, and host
  syncs only every ``sync_every`` tokens inside a speech span. On a CPU the layers run on fused
  weight copies (``fuse_layers``: q/k/v in one projection, gate/up in one, one-call RMS norms): a
  small model's step there costs per operation more than per multiply; a one-token step of float32
  layers takes its own path (``_one_token``: RoPE as one complex product on q/k rows interleaved in
  rotary pairs, norms from one dot product). Inside a speech span only the unit
  tokens and the stop can be sampled, so only their rows of the output layer are computed: the
  distribution is the same as masking the full logits, for less work.
* ``EagerDecoder``: the previous loop (transformers forward with a dynamic cache, sampling on the
  host with ``sample_next``), used for other architectures and when asked (``semantic.decoder``).

``DecoderSlot`` lends a model's one static decoder to one reply at a time (the semantic model's and
the chat reply writer's); a concurrent reply decodes eagerly.

Both give the same greedy tokens, and draw from the same distribution when sampling (the random
draws differ: the static decoder samples on the device by an exponential race).
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.semantic.config import SamplingConfig

log = logging.getLogger(__name__)

__all__ = ["SlotPlan", "EagerDecoder", "StaticDecoder", "DecoderSlot", "sample_next", "filtered_probs", "supports_static", "make_decoder"]


# ------------------------------------------------------------------------------ sampling maths
def penalize(logits: Tensor, present: Tensor, penalty: float) -> Tensor:
    """Repetition penalty (CTRL style) on the tokens marked ``present``: positive logits divided,
    negative ones multiplied by ``penalty``."""
    if penalty == 1.0:
        return logits
    return torch.where(present, torch.where(logits > 0, logits / penalty, logits * penalty), logits)


def filtered_probs(logits: Tensor, s: SamplingConfig) -> Tensor:
    """Probabilities after temperature and top-p (nucleus) filtering; logits [V] float32, after the
    penalty and masks. Not for greedy decoding (temperature 0)."""
    probs = torch.softmax(logits / s.temperature, dim=-1)
    if s.top_p < 1.0:
        sorted_p, order = probs.sort(descending=True)
        keep = sorted_p.cumsum(0) - sorted_p < s.top_p
        keep[0] = True
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_p * keep)
    return probs / probs.sum()


def sample_next(logits: Tensor, history: Tensor, s: SamplingConfig, generator: torch.Generator | None) -> int:
    """One token from logits [V] (float32), with repetition penalty over ``history`` ids (host loop)."""
    logits = logits.float().clone()
    if s.repetition_penalty != 1.0 and history.numel():
        present = torch.zeros(logits.shape[0], dtype=torch.bool)
        present[history] = True
        logits = penalize(logits, present, s.repetition_penalty)
    if s.temperature <= 0:
        return int(logits.argmax())
    return int(torch.multinomial(filtered_probs(logits, s), 1, generator=generator))


@dataclass
class SlotPlan:
    """What one slot may sample: stop token ids (id -> token string), the mask [V] of banned ids,
    the id the model's own end-of-sequence becomes (or None), and for the static decoder the
    allowed ids (ascending) with their rows of the output layer when that is worth it."""

    stops: dict[int, str]
    mask: Tensor
    eos_to: int | None = None
    allowed: Tensor | None = None  # [A] int64 on the device, ascending
    head_weight: Tensor | None = None  # [A, D] rows of the output layer
    head_bias: Tensor | None = None
    stop_ids: Tensor | None = None  # [S] on the device


# ------------------------------------------------------------------------------ eager (previous loop)
class EagerDecoder:
    """transformers forward with a dynamic KV cache; one host sync per token (any causal LM)."""

    name = "eager"

    def __init__(self, model: nn.Module, device: torch.device, sampling: SamplingConfig, eos_id: int | None):
        self.model, self.device, self.sampling, self.eos_id = model, device, sampling, eos_id
        self.gen = torch.Generator().manual_seed(sampling.seed) if sampling.seed is not None else None
        self.cache = None
        self.logits: Tensor | None = None
        self.seq: list[int] = []

    def plan(self, stops: dict[int, str], mask: Tensor, eos_to: int | None) -> SlotPlan:
        return SlotPlan(stops, mask, eos_to)

    def start(self, ids: list[int]) -> None:
        from transformers import DynamicCache

        self.cache = DynamicCache()
        self.seq = []
        self.feed(ids)

    def feed(self, ids: list[int]) -> None:
        self.seq.extend(ids)
        out = self.model(input_ids=torch.tensor([ids], device=self.device), past_key_values=self.cache, use_cache=True)
        self.logits = out.logits[0, -1]

    def sample(self, plan: SlotPlan, limit: int) -> Iterator[int]:
        """Sample and feed up to ``limit`` tokens; stops after yielding a stop token."""
        for _ in range(max(limit, 0)):
            assert self.logits is not None
            token = sample_next(self.logits.float().masked_fill(plan.mask, float("-inf")).cpu(), torch.tensor(self.seq), self.sampling, self.gen)
            if plan.eos_to is not None and token == self.eos_id and token not in plan.stops:
                token = plan.eos_to  # the model's own end-of-text closes the slot as its stop would
            self.feed([token])
            yield token
            if token in plan.stops:
                return


# ------------------------------------------------------------------------------ static cache
def supports_static(model: nn.Module) -> str | None:
    """None when ``StaticDecoder`` can run ``model``; else why not (the eager loop is used)."""
    cfg = getattr(model, "config", None)
    if cfg is None or getattr(cfg, "model_type", None) != "llama":
        return f"architecture {getattr(cfg, 'model_type', type(model).__name__)!r} (the static decoder knows LLaMA)"
    inner = getattr(model, "model", None)
    needed = ("embed_tokens", "layers", "norm", "rotary_emb")
    if inner is None or not all(hasattr(inner, n) for n in needed) or model.get_output_embeddings() is None:
        return "an unexpected LLaMA module layout"
    return None


class StaticDecoder(nn.Module):
    """Preallocated KV cache + our own decode step over a LLaMA model's modules.

    ``compile``: torch.compile the one-token step (``mode`` "reduce-overhead" = CUDA graphs on a
    GPU). The cache then has a fixed size (``max_len``) and attention is masked to the filled part;
    eagerly, attention reads only the filled part. ``sync_every``: inside a speech span, tokens are
    sampled and fed this many at a time on the device before the host looks at them (a stop token
    found inside a batch rewinds the cache: positions after it are simply overwritten later).
    """

    name = "static"

    def __init__(self, model: nn.Module, max_len: int, compile: bool = False, mode: str = "default", sync_every: int = 1,
                 fuse: bool | None = None, half: bool | None = None):
        """``fuse``: run the layers on fused weight copies (``FusedLayer``: one projection for q, k and
        v, RoPE on q and k together, one projection for the MLP's gate and up, one-call RMS norms) where every
        projection is a plain bias-free ``nn.Linear``; None = on a CPU for models of at most 1 B
        parameters, where a step is bound by the number of operations more than by arithmetic (it
        costs a copy of the attention and MLP input weights).
        ``half``: keep the fused projection weights in float16 (``FusedLayers.to_half``); None = when
        the model runs in float32 and every weight is exactly a float16 value (a float16 checkpoint:
        nothing is lost, only the activations entering a projection are rounded to float16)."""
        super().__init__()
        why = supports_static(model)
        if why:
            raise ValueError(f"StaticDecoder cannot run this model: {why}")
        self.lm = model
        cfg = model.config
        self.device = next(model.parameters()).device
        self.dtype = model.model.embed_tokens.weight.dtype
        self.layers = list(model.model.layers)
        self.heads = cfg.num_attention_heads
        self.kv_heads = getattr(cfg, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.max_len = max_len
        self.sync_every = max(int(sync_every), 1)
        shape = (len(self.layers), 1, self.kv_heads, max_len, self.head_dim)
        self.register_buffer("k_cache", torch.zeros(shape, dtype=self.dtype, device=self.device), persistent=False)
        self.register_buffer("v_cache", torch.zeros(shape, dtype=self.dtype, device=self.device), persistent=False)
        with torch.no_grad():
            positions = torch.arange(max_len, device=self.device)[None]
            cos, sin = model.model.rotary_emb(self.k_cache[0, :, 0, :1].to(self.dtype), positions)  # [1, L, dh]
        self.register_buffer("cos", cos[0].to(self.dtype), persistent=False)
        self.register_buffer("sin", sin[0].to(self.dtype), persistent=False)
        if fuse is None:
            fuse = self.device.type == "cpu" and sum(p.numel() for p in model.parameters()) <= 1_000_000_000
        self.fused = fuse_layers(model) if fuse else None
        if self.fused is not None and self.dtype == torch.float32 and (half or (half is None and self.fused.exactly_half())):
            self.fused.to_half()
        self.half_forced = bool(half)  # float16 copies asked for: the output rows too, even where they round
        self.rot: Tensor | None = None  # [max_len, 1, dh / 2] complex RoPE factors (fused float32 layers)
        if self.fused is not None and self.dtype == torch.float32 and _pairs_share_angles(self.cos, self.sin):
            self.fused.interleave_rope(self.heads, self.kv_heads, self.head_dim)
            h = self.head_dim // 2
            self.rot = torch.complex(self.cos[:, :h].float(), self.sin[:, :h].float())[:, None]
        embed = model.model.embed_tokens
        plain_embed = type(embed) is nn.Embedding and _unhooked(embed)
        self._one = OneStep.build(self.fused, self.heads * self.head_dim) if self.rot is not None and plain_embed else None
        self.compiled = compile
        self._step = torch.compile(self._decode_one, mode=mode, fullgraph=True, dynamic=False) if compile else self._decode_one
        self.pos = 0
        self.hidden: Tensor | None = None  # final-norm hidden state of the last fed position [D]
        self.counts: Tensor | None = None  # occurrences of each id in the sequence so far [V]
        self._one_count = torch.ones(1, dtype=torch.int32, device=self.device)
        self._plans: dict[tuple, SlotPlan] = {}
        self.sampling = SamplingConfig()
        self.gen: torch.Generator | None = None
        self.eos_id: int | None = None

    # -------------------------------------------------------------- per call
    def reset(self, sampling: SamplingConfig, eos_id: int | None, vocab: int) -> "StaticDecoder":
        """Start a new reply with these sampling settings (the cache buffers are reused)."""
        self.sampling, self.eos_id = sampling, eos_id
        self.gen = torch.Generator(device=self.device).manual_seed(sampling.seed) if sampling.seed is not None else None
        self.counts = torch.zeros(vocab, dtype=torch.int32, device=self.device)
        self.pos = 0
        return self

    def plan(self, stops: dict[int, str], mask: Tensor, eos_to: int | None) -> SlotPlan:
        """The slot's plan, built once per distinct slot (allowed ids and output-layer rows cached)."""
        key = (tuple(sorted(stops)), eos_to, mask.shape[0], hash(mask.cpu().numpy().tobytes()))
        if key not in self._plans:
            mask = mask.to(self.device)
            plan = SlotPlan(stops, mask, eos_to, stop_ids=torch.tensor(sorted(stops), device=self.device, dtype=torch.long))
            head = self.lm.get_output_embeddings()
            allowed = (~mask).nonzero().flatten()
            # only the allowed rows of the output layer, where that saves work (a speech span in a real
            # vocabulary) and nothing hooks the layer's output (hooks see the full logits, as before)
            # (with float16 layers, the rows in float16 even for the whole vocabulary: half the bytes per token)
            plain = type(head) is nn.Linear and _unhooked(head) and head.weight.shape[0] == mask.shape[0]
            restricted = allowed.numel() * 4 < mask.shape[0] * 3
            if plain and (restricted or (self.fused is not None and self.fused.half)):
                rows = head.weight.detach()[allowed].contiguous()
                if self.fused is not None and self.fused.half:  # the output rows in float16 too, where they lose nothing (or asked)
                    half = rows.to(torch.float16)
                    if self.half_forced or torch.equal(half.to(rows.dtype), rows):
                        rows = half
                if restricted or rows.dtype == torch.float16:
                    plan.allowed, plan.head_weight = allowed, rows
                    plan.head_bias = None if head.bias is None else head.bias.detach()[allowed].contiguous()
            self._plans[key] = plan
        return self._plans[key]

    # -------------------------------------------------------------- the network
    def _layers(self, x: Tensor, start: Tensor | int, n: int, cos: Tensor, sin: Tensor, attn_mask: Tensor | None, end: int) -> Tensor:
        """x [1, n, D] at positions start..start+n-1 -> final-norm hidden [1, n, D]; writes the cache."""
        if self.fused is not None:
            return self._fused_layers(x, start, n, cos, sin, attn_mask, end)
        b = 1
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            q = attn.q_proj(h).view(b, n, self.heads, self.head_dim).transpose(1, 2)
            k = attn.k_proj(h).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
            v = attn.v_proj(h).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            x = x + attn.o_proj(self._attend(i, q, k, v, start, n, attn_mask, end, attn.scaling))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return self.lm.model.norm(x)

    def _attend(self, i: int, q: Tensor, k: Tensor, v: Tensor, start: Tensor | int, n: int, attn_mask: Tensor | None, end: int,
                scale: float) -> Tensor:
        """Writes k, v [1, KV, n, dh] into layer ``i``'s cache; attention of q [1, H, n, dh] over
        positions 0..end-1 -> [1, n, H * dh]."""
        if isinstance(start, int):
            self.k_cache[i, :, :, start : start + n] = k
            self.v_cache[i, :, :, start : start + n] = v
        else:  # a position tensor (compiled one-token step)
            self.k_cache[i].index_copy_(2, start, k)
            self.v_cache[i].index_copy_(2, start, v)
        keys, values = self.k_cache[i, :, :, :end], self.v_cache[i, :, :, :end]
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=attn_mask, scale=scale, enable_gqa=self.kv_heads != self.heads)
        return out.transpose(1, 2).reshape(1, n, self.heads * self.head_dim)

    def _fused_layers(self, x: Tensor, start: Tensor | int, n: int, cos: Tensor, sin: Tensor, attn_mask: Tensor | None, end: int) -> Tensor:
        """``_layers`` on the fused weights: the same arithmetic in fewer operations."""
        fl = self.fused
        assert fl is not None
        qk = (self.heads + self.kv_heads) * self.head_dim
        cos, sin = cos.transpose(1, 2), sin.transpose(1, 2)  # [1, n, 1, dh]: broadcast over the heads of q and k together
        rot = None
        if fl.complex_rope:  # q and k rows interleaved in pairs: RoPE is one complex product
            assert self.rot is not None
            rot = self.rot[start : start + n] if isinstance(start, int) else self.rot[start]  # [n, 1, dh / 2]
        for i, f in enumerate(fl.layers):
            out = project(fl.norm(x, f.input_norm), f.qkv)  # [1, n, (H + 2 KV) dh]: q, k, v
            both = out[..., :qk].view(1, n, -1, self.head_dim)  # q and k heads, rotated together
            if rot is not None:
                both = torch.view_as_real(torch.view_as_complex(both.unflatten(-1, (-1, 2))) * rot).flatten(-2)
            else:
                both = both * cos + _rotate_half(both) * sin
            q = both[:, :, : self.heads].transpose(1, 2)
            k = both[:, :, self.heads :].transpose(1, 2)
            v = out[..., qk:].view(1, n, self.kv_heads, self.head_dim).transpose(1, 2)
            x = x + project(self._attend(i, q, k, v, start, n, attn_mask, end, f.scale), f.o)
            gate, up = project(fl.norm(x, f.post_norm), f.gate_up).chunk(2, dim=-1)
            x = x + project(f.act(gate) * up, f.down)
        return fl.norm(x, fl.final_norm)

    def _decode_one(self, token: Tensor, pos: Tensor) -> Tensor:
        """One token [1] at position ``pos`` [1] over the full-size cache (static shapes) -> hidden [D]."""
        x = self.lm.model.embed_tokens(token.view(1, 1))
        cos, sin = self.cos[pos][None, None], self.sin[pos][None, None]  # [1, 1, 1, dh]
        attn_mask = (torch.arange(self.max_len, device=token.device) <= pos)[None, None, None, :]
        return self._layers(x, pos, 1, cos, sin, attn_mask, self.max_len)[0, -1]

    def _forward(self, ids: Tensor) -> Tensor:
        """Feed ids [n] at the current position (eager; attention over the filled part) -> hidden [D]."""
        n = ids.shape[0]
        start, end = self.pos, self.pos + n
        if end > self.max_len:
            raise ValueError(f"the reply needs {end} positions but the decoder's cache holds {self.max_len}")
        if n == 1 and self._one is not None:
            hidden = self._one_token(ids, start)
            self.pos = end
            return hidden
        x = self.lm.model.embed_tokens(ids.view(1, n))
        cos, sin = self.cos[start:end][None, None], self.sin[start:end][None, None]
        attn_mask = None
        if n > 1:  # causal within the new tokens; all earlier positions visible
            attn_mask = torch.ones(n, end, dtype=torch.bool, device=ids.device).tril(start)[None, None]
        hidden = self._layers(x, start, n, cos, sin, attn_mask, end)[0, -1]
        self.pos = end
        return hidden

    def _one_token(self, token: Tensor, pos: int) -> Tensor:
        """``_fused_layers`` for one token [1] at position ``pos`` on vectors [D], in as few operations as
        the arithmetic allows (a CPU step of a small model is bound by the number of calls): RMS norms from
        one dot product, RoPE as one complex product, float16 operands written in place -> hidden [D]."""
        one, fl = self._one, self.fused
        assert one is not None and fl is not None
        heads, kv, dh = self.heads, self.kv_heads, self.head_dim
        qk = (heads + kv) * dh
        x = F.embedding(token, self.lm.model.embed_tokens.weight).view(-1)  # [D] float32
        rot = self.rot[pos]  # [1, dh / 2]
        end = pos + 1
        for i, f in enumerate(fl.layers):
            out = one.project(one.norm(x, one.input_norms[i], one.normed), f.qkv)  # [(H + 2 KV) dh]
            both = torch.view_as_real(torch.view_as_complex(out[:qk].view(heads + kv, dh // 2, 2)) * rot).view(heads + kv, dh)
            self.k_cache[i, 0, :, pos] = both[heads:]
            self.v_cache[i, 0, :, pos] = out[qk:].view(kv, dh)
            att = F.scaled_dot_product_attention(both[:heads].view(1, heads, 1, dh), self.k_cache[i, :, :, :end], self.v_cache[i, :, :, :end],
                                                 scale=f.scale, enable_gqa=kv != heads)  # [1, H, 1, dh]
            x = x + one.project(one.cast(att.view(-1), one.attended), f.o)
            gate_up = one.project(one.norm(x, one.post_norms[i], one.normed), f.gate_up)  # [2 F]
            x = x + one.project(one.gated(f.act, gate_up), f.down)
        return one.norm(x, one.final_norm, None)

    # -------------------------------------------------------------- decoder interface
    @torch.inference_mode()
    def start(self, ids: list[int]) -> None:
        """Prefill the prompt."""
        assert self.counts is not None, "call reset() first"
        self.pos = 0
        self.feed(ids)

    @torch.inference_mode()
    def feed(self, ids: list[int]) -> None:
        t = torch.tensor(ids, device=self.device, dtype=torch.long)
        self.counts.index_add_(0, t, torch.ones_like(t, dtype=torch.int32))
        self.hidden = self._forward(t)

    def _step_token(self, token: Tensor) -> None:
        """Feed one sampled token (a device tensor [1]) without a host sync."""
        self.counts.index_add_(0, token, self._one_count)
        if self.compiled:
            if self.pos >= self.max_len:
                raise ValueError(f"the reply needs more than the decoder's {self.max_len} cache positions")
            pos = torch.full((1,), self.pos, dtype=torch.long, device=self.device)
            try:
                self.hidden = self._step(token, pos).clone()  # clone: a CUDA graph reuses its output buffer
                self.pos += 1
                return
            except Exception as exc:  # a compiler that cannot handle this model or setup: keep going eagerly
                log.warning("semantic decoder: torch.compile failed (%s: %s); using the eager step", type(exc).__name__, str(exc)[:200])
                self.compiled = False
                self._step = self._decode_one
        self.hidden = self._forward(token)

    def _draw(self, plan: SlotPlan) -> Tensor:
        """The next token id [1] on the device, from the current hidden state."""
        s = self.sampling
        h = self.hidden
        if plan.head_weight is not None:
            logits = project(h, plan.head_weight, plan.head_bias).float()
            present = self.counts[plan.allowed] > 0
        else:
            logits = self.lm.get_output_embeddings()(h).float().masked_fill(plan.mask, float("-inf"))
            present = self.counts > 0
        logits = penalize(logits, present, s.repetition_penalty)
        if s.temperature <= 0 or s.top_p <= 0:  # greedy (top-p 0 keeps the most likely token alone)
            index = logits.argmax().view(1)
        else:
            index = self._race(torch.softmax(logits / s.temperature, dim=-1), s.top_p)
        token = plan.allowed[index] if plan.allowed is not None else index
        if plan.eos_to is not None and self.eos_id is not None and self.eos_id not in plan.stops:
            token = torch.where(token == self.eos_id, torch.full_like(token, plan.eos_to), token)
        return token

    def _race(self, probs: Tensor, top_p: float) -> Tensor:
        """An index [1] drawn from probs [A] after top-p filtering (``filtered_probs``'s distribution) by an
        exponential race: argmax p_i / E_i with E_i ~ Exp(1) picks i with probability p_i / sum(p), so
        the kept probabilities need no renormalising, and with top-p the race runs in sorted order."""
        if top_p >= 1.0:
            return (probs / torch.empty_like(probs).exponential_(1.0, generator=self.gen)).argmax().view(1)
        ranked, order = probs.sort(descending=True)
        kept = ranked * ((ranked.cumsum(0) - ranked) < top_p)  # the first always stays (0 < top_p)
        return order[(kept / torch.empty_like(kept).exponential_(1.0, generator=self.gen)).argmax()].view(1)

    @torch.inference_mode()
    def sample(self, plan: SlotPlan, limit: int) -> Iterator[int]:
        """Sample and feed up to ``limit`` tokens; stops after yielding a stop token. Tokens are
        taken to the host every ``sync_every`` tokens (1 = every token)."""
        done = 0
        while done < limit:
            batch = min(self.sync_every, limit - done)
            tokens, hiddens = [], []
            start_pos, start_counts = self.pos, None
            if batch > 1:
                start_counts = self.counts.clone()
            for _ in range(batch):
                token = self._draw(plan)
                self._step_token(token)
                tokens.append(token)
                hiddens.append(self.hidden)
            ids = torch.cat(tokens).tolist()  # the one host sync of the batch
            for j, token_id in enumerate(ids):
                yield token_id
                done += 1
                if token_id in plan.stops:
                    if j < batch - 1:  # rewind past the tokens drawn after the stop
                        self.pos = start_pos + j + 1
                        self.hidden = hiddens[j]
                        self.counts = start_counts
                        self.counts.index_add_(0, torch.tensor(ids[: j + 1], device=self.device),
                                               torch.ones(j + 1, dtype=torch.int32, device=self.device))
                    return


@dataclass
class FusedLayer:
    """One decoder layer's weights, fused for fewer operations per token."""

    input_norm: Tensor  # [D]
    qkv: Tensor  # [(H + 2 KV) dh, D]: the q, k and v projections
    o: Tensor  # [D, H dh]
    post_norm: Tensor  # [D]
    gate_up: Tensor  # [2 F, D]
    down: Tensor  # [D, F]
    act: object  # the MLP's activation
    scale: float  # attention scale


@dataclass
class FusedLayers:
    layers: list[FusedLayer]
    final_norm: Tensor
    eps: float
    half: bool = False  # the projection weights are float16 copies (see ``to_half``)
    complex_rope: bool = False  # q and k rows interleaved in rotary pairs (see ``interleave_rope``)

    def norm(self, x: Tensor, weight: Tensor) -> Tensor:
        """LLaMA RMS norm (float32 inside, weight applied in the input's dtype) in one fused call."""
        return weight * F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype)

    def to_half(self) -> "FusedLayers":
        """Keep the projection weights as float16 copies: a one-token step on a CPU streams half the
        bytes through float16 matrix-vector products (the demo model's step: 1.36x faster than with
        float32 projections, docs/semantic.md), while norms, attention and the residual stream stay
        in the model's dtype."""
        for f in self.layers:
            f.qkv, f.o, f.gate_up, f.down = (w.to(torch.float16) for w in (f.qkv, f.o, f.gate_up, f.down))
        self.half = True
        return self

    def interleave_rope(self, heads: int, kv_heads: int, head_dim: int) -> "FusedLayers":
        """Reorder the q and k rows of every head so that each rotary pair (i, i + dh / 2) sits side by
        side: RoPE is then one complex product per position. q and k move alike, so every score q . k is
        unchanged; only the layout of the (fused path's own) key cache differs."""
        half = head_dim // 2
        pairs = torch.stack([torch.arange(half), torch.arange(half) + half], dim=1).flatten()  # 0, h, 1, h + 1, ...
        rows = (torch.arange(heads + kv_heads)[:, None] * head_dim + pairs).flatten()
        for f in self.layers:
            f.qkv = torch.cat([f.qkv[rows.to(f.qkv.device)], f.qkv[(heads + kv_heads) * head_dim :]]).contiguous()
        self.complex_rope = True
        return self

    def exactly_half(self) -> bool:
        """Every projection weight is a float16 value (a checkpoint stored in float16 and loaded in
        float32): float16 copies then lose nothing."""
        return all(torch.equal(w, w.to(torch.float16).to(w.dtype)) for f in self.layers for w in (f.qkv, f.o, f.gate_up, f.down))


@dataclass
class OneStep:
    """What the one-token path of fused float32 layers (``StaticDecoder._one_token``) precomputes: the
    RMS norm weights times sqrt(D), so that a norm is ``x * rsqrt(x . x + eps D) * w'`` (the same value
    as LLaMA's ``w * x * rsqrt(mean(x^2) + eps)``), and, where the projections are float16 copies,
    float16 buffers their operands are written into (no separate conversion per projection)."""

    input_norms: list[Tensor]  # [D] each
    post_norms: list[Tensor]
    final_norm: Tensor
    eps_d: float  # eps * D
    ffn: int  # F
    normed: Tensor | None = None  # [D] float16: a norm's output
    attended: Tensor | None = None  # [H dh] float16: the attention output
    hidden: Tensor | None = None  # [F] float16: the MLP's gated hidden state

    @classmethod
    def build(cls, fl: "FusedLayers", attn_dim: int) -> "OneStep":
        dim = fl.final_norm.shape[0]
        root = dim**0.5
        ffn = fl.layers[0].down.shape[1]
        one = cls([f.input_norm * root for f in fl.layers], [f.post_norm * root for f in fl.layers], fl.final_norm * root, fl.eps * dim, ffn)
        if fl.half:
            device = fl.final_norm.device
            one.normed, one.attended, one.hidden = (torch.empty(n, dtype=torch.float16, device=device) for n in (dim, attn_dim, ffn))
        return one

    def norm(self, x: Tensor, weight: Tensor, out: Tensor | None) -> Tensor:
        """RMS norm of x [D] (float32), written into ``out`` (float16) when given."""
        scaled = x * torch.rsqrt(torch.dot(x, x) + self.eps_d)
        return scaled * weight if out is None else torch.mul(scaled, weight, out=out)

    @staticmethod
    def cast(x: Tensor, out: Tensor | None) -> Tensor:
        return x if out is None else out.copy_(x)

    def gated(self, act, gate_up: Tensor) -> Tensor:
        """The MLP's act(gate) * up from gate_up [2 F] -> [F] (into the float16 buffer where there is one)."""
        gate, up = gate_up[: self.ffn], gate_up[self.ffn :]
        return act(gate) * up if self.hidden is None else torch.mul(act(gate), up, out=self.hidden)

    @staticmethod
    def project(x: Tensor, weight: Tensor) -> Tensor:
        """weight [O, I] @ x [I] (float16 operands where the weight is a float16 copy) -> [O] float32."""
        return torch.mv(weight, x) if weight.dtype == x.dtype == torch.float32 else torch.mv(weight, x).float()


def project(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear`` where ``weight`` may be a float16 copy of a wider model's weight: one position (a
    decode step) runs the float16 matrix-vector product, several (a prefill) the weight widened to
    ``x``'s dtype, since float16 matrix products on a CPU are slow. Returns ``x``'s dtype."""
    if weight.dtype == x.dtype:
        return F.linear(x, weight, bias)
    if x.dim() == 1 or x.shape[-2] == 1:
        out = F.linear(x.to(weight.dtype), weight).to(x.dtype)
    else:
        out = F.linear(x, weight.to(x.dtype))
    return out if bias is None else out + bias


def _unhooked(m: nn.Module) -> bool:
    """Nothing hooks the module's calls (a path that skips calling it changes nothing observable)."""
    return not m._forward_hooks and not m._forward_pre_hooks


def fuse_layers(model: nn.Module) -> FusedLayers | None:
    """Fused weight copies of a LLaMA-family model's layers, or None where any projection is not a
    plain bias-free ``nn.Linear`` (4-bit layers, adapters, hooks) or a norm is not LLaMA's RMS norm."""

    def plain(m: nn.Module) -> bool:
        return type(m) is nn.Linear and m.bias is None and _unhooked(m)

    def rms(m: nn.Module) -> bool:
        return type(m).__name__.endswith("RMSNorm") and hasattr(m, "variance_epsilon") and _unhooked(m)

    norms = [model.model.norm]
    layers = []
    for layer in model.model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        projections = [attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, getattr(mlp, "gate_proj", None), getattr(mlp, "up_proj", None),
                       getattr(mlp, "down_proj", None)]
        if not all(p is not None and plain(p) for p in projections) or not (rms(layer.input_layernorm) and rms(layer.post_attention_layernorm)):
            return None
        norms += [layer.input_layernorm, layer.post_attention_layernorm]
        with torch.no_grad():
            q, k, v = attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight
            qkv = torch.cat([q, k, v]).contiguous()
            gate_up = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]).contiguous()
        layers.append(FusedLayer(layer.input_layernorm.weight.detach(), qkv, attn.o_proj.weight.detach(), layer.post_attention_layernorm.weight.detach(),
                                 gate_up, mlp.down_proj.weight.detach(), mlp.act_fn, attn.scaling))
    if not rms(model.model.norm) or len({float(n.variance_epsilon) for n in norms}) != 1:
        return None
    return FusedLayers(layers, model.model.norm.weight.detach(), float(model.model.norm.variance_epsilon))


def _pairs_share_angles(cos: Tensor, sin: Tensor) -> bool:
    """LLaMA's RoPE tables [L, dh] repeat one angle per rotary pair (i, i + dh / 2): then the rotation
    is a complex product of the pairs."""
    half = cos.shape[-1] // 2
    return cos.shape[-1] % 2 == 0 and torch.equal(cos[:, :half], cos[:, half:]) and torch.equal(sin[:, :half], sin[:, half:])


def _rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class DecoderSlot:
    """A model's static decoder, lent to one reply at a time: ``lend`` gives it (built on first use, rebuilt
    larger when a reply needs more positions) or, while it is lent or where it cannot run the model (or
    ``kind`` is eager), an ``EagerDecoder``. Settings as ``make_decoder``'s; ``max_len`` caps the cache."""

    def __init__(self, model: nn.Module, kind: str = "auto", compile_mode: str = "off", sync_every: int = 1, fuse_mode: str = "auto",
                 half_mode: str = "auto", max_len: int | None = None):
        self.model, self.kind, self.compile_mode, self.sync_every = model, kind, compile_mode, sync_every
        self.fuse_mode, self.half_mode, self.max_len = fuse_mode, half_mode, max_len
        self.device = next(model.parameters()).device
        self.static: StaticDecoder | None = None  # built on first use, reused (cache buffers, compiled step)
        self.eager_only = kind == "eager"
        self.lock = threading.Lock()  # one reply at a time on it; a concurrent one decodes eagerly

    @contextmanager
    def lend(self, sampling: SamplingConfig, eos_id: int | None, vocab: int, positions: int) -> Iterator["EagerDecoder | StaticDecoder"]:
        """``with slot.lend(...) as decoder``: the decoder for one reply of at most ``positions`` tokens
        (prompt included); the static decoder is given back when the block ends (also on an error or
        when a generator around it is closed)."""
        if self.eager_only or not self.lock.acquire(blocking=False):
            yield EagerDecoder(self.model, self.device, sampling, eos_id)
            return
        try:
            size = -(-positions // 1024) * 1024  # grows in steps of 1024 positions
            size = min(self.max_len, size) if self.max_len else size
            if self.static is None or self.static.max_len < positions:
                self.static = make_decoder(self.kind, self.model, size, self.compile_mode, self.sync_every, self.fuse_mode, self.half_mode)
            if self.static is None:
                self.eager_only = True  # an architecture the static decoder does not know (logged once)
                yield EagerDecoder(self.model, self.device, sampling, eos_id)
            else:
                yield self.static.reset(sampling, eos_id, vocab)
        finally:
            self.lock.release()


def make_decoder(kind: str, model: nn.Module, max_len: int, compile_mode: str, sync_every: int, fuse_mode: str = "auto",
                 half_mode: str = "auto") -> StaticDecoder | None:
    """A ``StaticDecoder`` for ``model`` when ``kind`` (auto | static | eager) allows it, else None
    (the caller then uses ``EagerDecoder``). ``compile_mode``: off | auto (CUDA only) | on;
    ``fuse_mode``: auto (CPU, up to 1 B parameters) | on | off; ``half_mode`` (fused float32 layers
    only): auto (weights that are exactly float16 values) | on | off."""
    if kind not in ("auto", "static", "eager"):
        raise ValueError(f"unknown semantic.decoder {kind!r}; use auto, static or eager")
    if compile_mode not in ("off", "auto", "on"):
        raise ValueError(f"unknown semantic.compile {compile_mode!r}; use off, auto or on")
    if fuse_mode not in ("off", "auto", "on"):
        raise ValueError(f"unknown semantic.fuse {fuse_mode!r}; use off, auto or on")
    if half_mode not in ("off", "auto", "on"):
        raise ValueError(f"unknown semantic.half_matmul {half_mode!r}; use off, auto or on")
    if kind == "eager":
        return None
    why = supports_static(model)
    if why:
        if kind == "static":
            raise ValueError(f"semantic.decoder static cannot run this model: {why}; set semantic.decoder: auto or eager")
        log.info("semantic model: eager decode loop (%s)", why)
        return None
    device = next(model.parameters()).device
    quantized = any("4bit" in type(m).__name__ for m in model.modules())
    compile_on = compile_mode == "on" or (compile_mode == "auto" and device.type == "cuda" and not quantized)
    mode = "reduce-overhead" if device.type == "cuda" else "default"
    sync = sync_every if device.type == "cuda" else 1  # on a CPU every op is synchronous anyway
    fuse = None if fuse_mode == "auto" else fuse_mode == "on"
    half = None if half_mode == "auto" else half_mode == "on"
    return StaticDecoder(model, max_len, compile=compile_on, mode=mode, sync_every=sync, fuse=fuse, half=half)
