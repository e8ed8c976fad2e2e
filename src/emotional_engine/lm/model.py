"""Llama-architecture decoder (SmolLM2, Llama 3.x), nanoGPT style, with a per-sequence KV cache
(kv_cache.py).

Two entry points:
- `forward(idx, targets)`: a plain (B, T) causal pass for evaluation and training.
- `forward_packed(tokens, segments)`: the serving pass. Tokens of several sequences are packed
  into one flat (N,) batch, vLLM style, so prefill chunks and decode tokens of different requests
  share every matrix multiply; attention runs per sequence against that sequence's own cache.

Where the runtime's C++ kernels load (`Llama.use_kernels`, called by quant.apply_weight_format), the serving
pass runs a layer's norms, residual adds, rotary, gated activation and decode attention as fused ops
(lm/kernels/decode.cpp) instead of a hundred small PyTorch ops; without them, the same pass in PyTorch.

Batch invariance: CPU GEMM kernels pick different blockings for different row counts, which
changes float rounding; the packed rows are padded to `row_multiple` (measured for the weight
format in use, see quant.py) so a row's result never depends on how many rows share the batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import accumulate

import torch
import torch.nn as nn
import torch.nn.functional as F

from emotional_engine.lm.kv_cache import KVArena, Segment


@dataclass
class LlamaConfig:
    vocab_size: int = 49152
    n_layer: int = 30
    n_head: int = 9
    n_kv_head: int = 3
    n_embd: int = 576
    intermediate_size: int = 1536
    context_length: int = 8192
    rope_theta: float = 100000.0
    rms_eps: float = 1e-5
    head_dim: int = 64
    tie_embeddings: bool = True
    has_rope_freqs: bool = False  # Llama 3.1+: per-frequency scaling factors stored as a tensor


@dataclass
class DecodeBatch:
    """Single-token segments whose caches live in one arena: attended to in one call."""

    arena: KVArena
    rows: torch.Tensor  # (B,) packed row of each
    slots: torch.Tensor  # (B,) arena slot of each
    pos: torch.Tensor  # (B,) position of the new token
    n_slots: int
    bias: torch.Tensor | None  # (n_slots * nkv, g, cap) additive mask: 0 may attend, -inf may not (PyTorch path)
    identity: bool  # segment i is row i and slot i, and every slot decodes: no gather/scatter needed


@dataclass
class PackedPlan:
    decode: DecodeBatch | None
    per_sequence: list[tuple[Segment, int]]  # (segment, first packed row) attended one by one

    @classmethod
    def build(cls, segments: list[Segment], cfg: LlamaConfig, masks: bool = True) -> PackedPlan:
        """`masks`: build the decode batch's attention bias (the fused attention reads positions instead)."""
        dec, rest, row = [], [], 0
        arena = next((s.cache.arena for s in segments if s.n == 1 and s.cache.arena is not None), None)
        for s in segments:
            (dec if s.n == 1 and arena is not None and s.cache.arena is arena else rest).append((s, row))
            row += s.n
        if not dec:
            return cls(None, rest)
        n_slots = len(arena.caches)
        slots = torch.tensor([s.cache.slot for s, _ in dec])
        pos = torch.tensor([s.cache.length for s, _ in dec])
        bias = None
        if masks:
            # slots not decoding this step get a dummy row that may see key 0 (a fully masked row is NaN)
            limit = torch.zeros(n_slots, dtype=torch.long).index_copy_(0, slots, pos)
            blocked = torch.arange(arena.cap)[None, :] > limit[:, None]  # (S, cap)
            bias = torch.zeros(n_slots, cfg.n_kv_head, cfg.n_head // cfg.n_kv_head, arena.cap)
            bias = bias.masked_fill_(blocked[:, None, None, :], float("-inf")).view(-1, *bias.shape[2:])
        rows = torch.tensor([r for _, r in dec])
        identity = len(dec) == len(segments) == n_slots and bool((slots == torch.arange(n_slots)).all())
        return cls(DecodeBatch(arena, rows, slots, pos, n_slots, bias, identity), rest)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        # by hand: F.rms_norm on CPU takes a slower path with dtype round trips
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True).add_(self.eps)) * self.weight


class Rotary(nn.Module):
    """Rotate-half RoPE tables, extended on demand."""

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.cfg = cfg
        inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, dtype=torch.float64) / cfg.head_dim))
        self.register_buffer("inv_freq", inv_freq.float(), persistent=False)
        self.register_buffer("rope_freqs", torch.ones(cfg.head_dim // 2), persistent=cfg.has_rope_freqs)
        self._cos = torch.empty(0)
        self._sin = torch.empty(0)

    def tables(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sign-adjusted sin, (n, hs) each, for positions 0..n-1."""
        if self._cos.shape[0] < n:
            n = max(n, 2 * self._cos.shape[0], 256)
            t = torch.arange(n, dtype=torch.float32)
            freqs = torch.outer(t, self.inv_freq / self.rope_freqs)  # (n, hs/2)
            emb = torch.cat([freqs, freqs], dim=-1)  # (n, hs)
            sin = emb.sin()
            self._cos, self._sin = (
                emb.cos(),
                torch.cat([-sin[:, : sin.shape[1] // 2], sin[:, sin.shape[1] // 2 :]], dim=1),
            )
        return self._cos, self._sin


def apply_rotary(x, cos, sin_signed):
    """x: (N, nh, hs); cos, sin_signed: (N, 1, hs). rotate_half(x) * sin == roll(x) * sin_signed."""
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, dims=-1), sin_signed)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.cfg = cfg
        self.q_dim = cfg.n_head * cfg.head_dim
        self.kv_dim = cfg.n_kv_head * cfg.head_dim
        self.scale = 1.0 / math.sqrt(cfg.head_dim)
        self.qkv = nn.Linear(cfg.n_embd, self.q_dim + 2 * self.kv_dim, bias=False)
        self.proj = nn.Linear(self.q_dim, cfg.n_embd, bias=False)
        # Seam for emotion-aware attention: a module with `adjust_qk(qk, ctx) -> qk` on the
        # (N, nh + nkv, hs) pre-rotary queries-then-keys, and `gate(x, ctx) -> (N, nh, 1)` scaling
        # the per-head output. None = the base model.
        self.adapter: nn.Module | None = None

    def _project(self, x, cos, sin, ctx, fused=None):
        """x: (N, C) -> q (N, nh, hs), k/v (N, nkv, hs), rotated."""
        c = self.cfg
        qkv = self.qkv(x)
        qk = qkv[:, : self.q_dim + self.kv_dim].view(-1, c.n_head + c.n_kv_head, c.head_dim)  # queries, then keys
        v = qkv[:, self.q_dim + self.kv_dim :].view(-1, c.n_kv_head, c.head_dim)
        if self.adapter is not None and ctx is not None:
            qk = self.adapter.adjust_qk(qk, ctx)
        if fused is not None:
            fused.rope_(qk, cos, sin)
        else:
            qk = apply_rotary(qk, cos, sin)
        q, k = qk.split([c.n_head, c.n_kv_head], dim=1)
        return q, k, v

    def _output(self, y, x, ctx):
        """y: (N, nh, hs) attention output -> (N, C)."""
        if self.adapter is not None and ctx is not None:
            y = y * self.adapter.gate(x, ctx)
        return self.proj(y.reshape(y.shape[0], self.q_dim))

    def forward(self, x, cos, sin, ctx=None):
        """Plain causal attention over (B, T, C), no cache."""
        B, T, C = x.shape
        q, k, v = self._project(x.reshape(B * T, C), cos, sin, ctx)
        q = q.view(B, T, -1, self.cfg.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, -1, self.cfg.head_dim).transpose(1, 2)  # (B, nkv, T, hs)
        v = v.view(B, T, -1, self.cfg.head_dim).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        y = y.transpose(1, 2).reshape(B * T, -1, self.cfg.head_dim)
        return self._output(y, x.reshape(B * T, C), ctx).view(B, T, C)

    def forward_packed(self, x, cos, sin, layer: int, plan: PackedPlan, ctx=None, fused=None):
        """x: (N, C) packed tokens (rows past the segments are padding). `fused`: the kernels' ops."""
        c = self.cfg
        q, k, v = self._project(x, cos, sin, ctx, fused)
        y = q.new_zeros(q.shape)  # (N, nh, hs); padding rows stay zero
        if plan.decode is not None and fused is not None:
            d = plan.decode
            fused.decode_attention_(y, q, k, v, d.arena.k[layer], d.arena.v[layer], d.rows, d.slots, d.pos, self.scale)
        elif plan.decode is not None:
            d = plan.decode
            S, B = d.n_slots, d.rows.shape[0]
            kl, vl = d.arena.k[layer], d.arena.v[layer]  # (slots, nkv, cap, hs)
            kl[d.slots, :, d.pos] = k[:B] if d.identity else k[d.rows]
            vl[d.slots, :, d.pos] = v[:B] if d.identity else v[d.rows]
            # the `group` query heads sharing a kv head become `group` query rows: (S*nkv, g, hs)
            if d.identity:
                qs = q[:B].reshape(S * c.n_kv_head, -1, c.head_dim)
            else:
                qs = q.new_zeros(S, c.n_head, c.head_dim)
                qs[d.slots] = q[d.rows]
                qs = qs.view(S * c.n_kv_head, -1, c.head_dim)
            keys = kl[:S].view(S * c.n_kv_head, -1, c.head_dim)  # (S*nkv, cap, hs)
            vals = vl[:S].view(S * c.n_kv_head, -1, c.head_dim)
            att = torch.softmax(torch.baddbmm(d.bias, qs, keys.transpose(1, 2), alpha=self.scale), dim=-1)
            out = torch.bmm(att, vals).view(S, c.n_head, c.head_dim)  # (S, nh, hs)
            if d.identity and not plan.per_sequence:
                return self._output(F.pad(out, (0, 0, 0, 0, 0, q.shape[0] - B)), x, ctx)
            y[d.rows] = out[d.slots]
        for s, row in plan.per_sequence:
            L, T = s.cache.length, s.n
            kc, vc = s.cache.k[layer], s.cache.v[layer]  # (nkv, cap, hs)
            kc[:, L : L + T] = k[row : row + T].transpose(0, 1)
            vc[:, L : L + T] = v[row : row + T].transpose(0, 1)
            keys, vals = kc[:, : L + T].unsqueeze(0), vc[:, : L + T].unsqueeze(0)  # (1, nkv, L+T, hs)
            qs = q[row : row + T].transpose(0, 1).unsqueeze(0)  # (1, nh, T, hs)
            if L == 0:
                out = F.scaled_dot_product_attention(qs, keys, vals, is_causal=True, enable_gqa=True)
            else:
                # query i sits at position L+i and may see keys 0..L+i
                mask = torch.ones(T, L + T, dtype=torch.bool).tril(diagonal=L)
                out = F.scaled_dot_product_attention(qs, keys, vals, attn_mask=mask, enable_gqa=True)
            y[row : row + T] = out[0].transpose(0, 1)
        return self._output(y, x, ctx)


class MLP(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.hidden = cfg.intermediate_size
        self.gate_up = nn.Linear(cfg.n_embd, 2 * cfg.intermediate_size, bias=False)
        self.down = nn.Linear(cfg.intermediate_size, cfg.n_embd, bias=False)

    def forward(self, x, fused=None):
        if fused is not None:
            return self.down(fused.silu_mul(self.gate_up(x), self.hidden))
        gate, up = self.gate_up(x).split(self.hidden, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.n_embd, cfg.rms_eps)
        self.attn = CausalSelfAttention(cfg)
        self.mlp_norm = RMSNorm(cfg.n_embd, cfg.rms_eps)
        self.mlp = MLP(cfg)
        # the four projections as the kernels' decode_layer_ takes them ((blocks, out features) each, see
        # quant.NativeLinear.x8), or None where one of them is not in repacked blocks (Llama.use_kernels)
        self.x8: list | None = None

    def forward(self, x, cos, sin, ctx=None):
        x = x + self.attn(self.attn_norm(x), cos, sin, ctx)
        return x + self.mlp(self.mlp_norm(x))

    def forward_packed(self, x, cos, sin, layer, plan, ctx=None):
        x = x + self.attn.forward_packed(self.attn_norm(x), cos, sin, layer, plan, ctx)
        return x + self.mlp(self.mlp_norm(x))

    def forward_fused(self, x, delta, cos, sin, layer, plan, ctx, fused):
        """forward_packed on the kernels' fused ops, the residual stream `x` updated in place. `delta`: the
        previous layer's MLP output, not yet added to `x` (its add is fused with this layer's norm), or None.
        Returns (x, this layer's MLP output)."""
        eps = self.attn_norm.eps
        if self.x8 is not None and not plan.per_sequence and (self.attn.adapter is None or ctx is None):
            d, c = plan.decode, self.attn.cfg
            mlp_out = fused.decode_layer_(
                x, delta, self.attn_norm.weight, self.mlp_norm.weight, eps, *self.x8, cos, sin, c.n_head,
                c.n_kv_head, d.arena.k[layer], d.arena.v[layer], d.rows, d.slots, d.pos, self.attn.scale,
            )  # fmt: skip
            return x, mlp_out
        h = (
            fused.rms_norm(x, self.attn_norm.weight, eps)
            if delta is None
            else fused.add_rms_norm_(x, delta, self.attn_norm.weight, eps)
        )
        a = self.attn.forward_packed(h, cos, sin, layer, plan, ctx, fused)
        h = fused.add_rms_norm_(x, a, self.mlp_norm.weight, eps)
        return x, self.mlp(h, fused)


class Llama(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.config = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.layers = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.norm = RMSNorm(cfg.n_embd, cfg.rms_eps)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.tok_embeddings.weight
        self.rotary = Rotary(cfg)
        self.weight_format = "fp32"
        self.row_multiple = 4  # batch-invariant row padding; quant.apply_weight_format measures it
        self.fused = None  # the kernels' ops (lm/kernels) for the serving pass: see use_kernels

    def use_kernels(self, ops) -> None:
        """Run the serving pass on the kernels' fused ops (None: in PyTorch). Called once the projections
        have their final form (quant.apply_weight_format)."""
        self.fused = ops
        for block in self.layers:
            lins = (block.attn.qkv, block.attn.proj, block.mlp.gate_up, block.mlp.down)
            x8 = [getattr(lin, "x8", None) for lin in lins]
            block.x8 = None if ops is None or None in x8 else [t for pair in x8 for t in pair]

    @classmethod
    def from_state_dict(cls, cfg: LlamaConfig, sd: dict[str, torch.Tensor]) -> Llama:
        """Build without the cost of random initialisation: parameters start on the meta device."""
        with torch.device("meta"):
            model = cls(cfg)
        model.rotary = Rotary(cfg)  # buffers are computed, not loaded
        model.load_weights(sd)
        return model

    @torch.no_grad()
    def load_weights(self, sd: dict[str, torch.Tensor]) -> None:
        sd = dict(sd)
        if "rope_freqs" in sd:
            self.rotary.rope_freqs.copy_(sd.pop("rope_freqs"))
        missing, unexpected = self.load_state_dict(sd, strict=False, assign=True)
        missing = [
            m for m in missing if not (m == "lm_head.weight" and self.config.tie_embeddings) and "rope_freqs" not in m
        ]
        if missing or unexpected:
            raise ValueError(f"weights do not match the config: missing {missing}, unexpected {unexpected}")
        if self.config.tie_embeddings:  # `assign` replaced the shared Parameter; tie again
            self.lm_head.weight = self.tok_embeddings.weight

    def forward(self, idx, targets=None, ctx=None):
        """idx: (B, T) -> logits (B, T, vocab), loss or None. ctx: (B, T, D) emotion context or None."""
        B, T = idx.shape
        if ctx is not None:
            ctx = ctx.reshape(B * T, -1)  # the attention layers see flat rows
        cos, sin = self.rotary.tables(T)
        cos, sin = cos[:T].repeat(B, 1)[:, None], sin[:T].repeat(B, 1)[:, None]  # (B*T, 1, hs)
        x = self.tok_embeddings(idx)
        for block in self.layers:
            x = block(x, cos, sin, ctx)
        logits = self.lm_head(self.norm(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-1)
        return logits, loss

    def forward_packed(self, tokens: torch.Tensor, segments: list[Segment], ctx=None) -> torch.Tensor:
        """tokens: (N,) the new tokens of every segment, in order. Appends them to each segment's
        cache and returns the logits of each segment's last token: (len(segments), vocab).
        ctx: (N, D) each token's emotion context (zeros: none), or None for the base model."""
        N = tokens.shape[0]
        assert N == sum(s.n for s in segments)
        pos = torch.cat([torch.arange(s.cache.length, s.cache.length + s.n) for s in segments])
        pad = -N % self.row_multiple
        if pad:
            tokens = F.pad(tokens, (0, pad))
            pos = F.pad(pos, (0, pad))
            if ctx is not None:
                ctx = F.pad(ctx, (0, 0, 0, pad))
        for s in segments:
            s.cache.reserve(s.n)
        cos, sin = self.rotary.tables(int(pos.max()) + 1)
        cos, sin = cos[pos][:, None], sin[pos][:, None]  # (N, 1, hs)
        # the fused ops have no backward, and the fused attention reads float32 caches
        fused = None if torch.is_grad_enabled() or any(s.cache.dtype != torch.float32 for s in segments) else self.fused
        plan = PackedPlan.build(segments, self.config, masks=fused is None)
        x = self.tok_embeddings(tokens)
        delta = None
        for i, block in enumerate(self.layers):
            if fused is not None:
                x, delta = block.forward_fused(x, delta, cos, sin, i, plan, ctx, fused)
            else:
                x = block.forward_packed(x, cos, sin, i, plan, ctx)
        last = torch.tensor(list(accumulate(s.n for s in segments))) - 1  # each segment's last row
        for s, t in zip(segments, tokens[:N].split([s.n for s in segments])):
            s.cache.length += s.n
            s.cache.tokens.extend(t.tolist())
        if fused is not None:
            h = fused.add_rms_norm_(x[last], delta[last], self.norm.weight, self.norm.eps)
        else:
            h = self.norm(x[last])
        pad = -h.shape[0] % self.row_multiple
        return self.lm_head(F.pad(h, (0, 0, 0, pad)))[: len(segments)]
