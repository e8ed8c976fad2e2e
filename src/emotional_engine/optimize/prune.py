"""Structured pruning: a smaller dense model, so the kernels run it faster (no sparse masks).

Importance is measured from activations on calibration text (no gradients):
- feed-forward channel j of a layer: mean |silu(gate_j) * up_j| over the tokens, times the norm of
  down's column j (what the channel adds to the residual stream);
- attention head group g (one KV head and the query heads that share it, so GQA stays whole): mean
  norm of what its query heads' outputs add through the output projection;
- layer: 1 - mean cosine between the residual stream before and after the layer (ShortGPT's block
  influence): a layer that barely turns the stream goes first.
The same share is removed from every layer (a GGUF llama has one width per kind), each layer keeping
its own most important channels or heads. Kept feed-forward widths are whole blocks of 32 (the
formats' block), and whole super-blocks of 256 when the width allows, so K-quants fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from emotional_engine.lm.model import Llama, LlamaConfig
from emotional_engine.optimize.gguf_out import weights_of

WHAT = ("ffn", "heads", "layers")
MAX_SPARSITY = 0.9


class PruneError(ValueError):
    pass


@dataclass(frozen=True)
class PruneSpec:
    """Shares to remove, each in (0, 0.9] or 0 (untouched)."""

    ffn: float = 0.0
    heads: float = 0.0
    layers: float = 0.0

    @classmethod
    def parse(cls, spec: str) -> PruneSpec:
        """`0.25` (feed-forward channels), or `ffn=0.25,heads=0.34,layers=0.1`."""
        shares = {}
        for part in spec.split(","):
            what, eq, value = part.strip().rpartition("=")
            what = what.strip() if eq else "ffn"
            if what not in WHAT:
                raise PruneError(f"{part.strip()!r}: prune one of {', '.join(WHAT)} (for example ffn=0.25)")
            try:
                share = float(value)
            except ValueError:
                raise PruneError(f"{part.strip()!r}: the sparsity must be a number in (0, {MAX_SPARSITY}]") from None
            if not 0 < share <= MAX_SPARSITY:
                raise PruneError(f"{what} sparsity {share} is outside (0, {MAX_SPARSITY}]")
            shares[what] = share
        return cls(**shares)

    def describe(self) -> dict[str, float]:
        return {w: getattr(self, w) for w in WHAT if getattr(self, w)}


@dataclass
class Importance:
    ffn: list[torch.Tensor]  # per layer: (intermediate,)
    heads: list[torch.Tensor]  # per layer: (n_kv_head,)
    layers: torch.Tensor  # (n_layer,)


@torch.no_grad()
def measure(model: Llama, windows: torch.Tensor) -> Importance:
    """Importance of every channel, head group and layer over calibration `windows` (n, T) of ids."""
    cfg = model.config
    ffn = [torch.zeros(cfg.intermediate_size) for _ in range(cfg.n_layer)]
    heads = [torch.zeros(cfg.n_head) for _ in range(cfg.n_layer)]
    influence = torch.zeros(cfg.n_layer)
    hooks = []

    def on_down(i):
        def hook(_module, args):
            ffn[i] += args[0].reshape(-1, cfg.intermediate_size).abs().sum(0)

        return hook

    def on_proj(i, proj):
        def hook(_module, args):
            y = args[0].reshape(-1, cfg.n_head, cfg.head_dim)  # (N, nh, hs) per-head outputs
            w = proj.weight.view(cfg.n_embd, cfg.n_head, cfg.head_dim)  # (C, nh, hs)
            heads[i] += torch.einsum("nhd,chd->nhc", y, w).norm(dim=-1).sum(0)

        return hook

    def on_block(i):
        def hook(_module, args, out):
            x = args[0]
            influence[i] += (1 - F.cosine_similarity(x, out, dim=-1)).sum()

        return hook

    for i, block in enumerate(model.layers):
        hooks += [
            block.mlp.down.register_forward_pre_hook(on_down(i)),
            block.attn.proj.register_forward_pre_hook(on_proj(i, block.attn.proj)),
            block.register_forward_hook(on_block(i)),
        ]
    try:
        for w in windows:
            model(w[None])
    finally:
        for h in hooks:
            h.remove()
    tokens = windows.numel()
    group = cfg.n_head // cfg.n_kv_head
    return Importance(
        ffn=[f / tokens * block.mlp.down.weight.norm(dim=0) for f, block in zip(ffn, model.layers)],
        heads=[h.view(cfg.n_kv_head, group).sum(1) / tokens for h in heads],
        layers=influence / tokens,
    )


def kept_width(width: int, share: float) -> int:
    """Channels kept when `share` of `width` go: whole blocks of 32 (of 256 where that stays within one
    block of 32 of the share asked)."""
    want = width * (1 - share)
    k32 = max(32, int(round(want / 32)) * 32)
    k256 = int(round(want / 256)) * 256
    return k256 if k256 >= 256 and abs(k256 - want) <= 32 else min(width, k32)


def prune(model: Llama, spec: PruneSpec, imp: Importance) -> tuple[LlamaConfig, dict[str, torch.Tensor]]:
    """The pruned model's config and fp32 state dict (our names), the original untouched."""
    cfg = model.config
    sd = weights_of(model)
    layers = list(range(cfg.n_layer))
    if spec.layers:
        drop = max(1, int(round(cfg.n_layer * spec.layers)))
        if drop >= cfg.n_layer:
            raise PruneError(f"pruning {spec.layers} of {cfg.n_layer} layers would leave none")
        gone = set(imp.layers.argsort()[:drop].tolist())
        layers = [i for i in layers if i not in gone]
    width = kept_width(cfg.intermediate_size, spec.ffn) if spec.ffn else cfg.intermediate_size
    groups = cfg.n_kv_head - (max(1, math.floor(cfg.n_kv_head * spec.heads + 0.5)) if spec.heads else 0)
    if groups < 1:
        raise PruneError(f"pruning {spec.heads} of {cfg.n_kv_head} key/value heads would leave none")
    group = cfg.n_head // cfg.n_kv_head
    new = replace(cfg, n_layer=len(layers), intermediate_size=width, n_kv_head=groups, n_head=groups * group)
    out = {k: v.clone() for k, v in sd.items() if not k.startswith("layers.")}
    for j, i in enumerate(layers):
        p, o = f"layers.{i}.", f"layers.{j}."
        ffn = imp.ffn[i].topk(width).indices.sort().values
        gate_up = sd[p + "mlp.gate_up.weight"]
        out[o + "mlp.gate_up.weight"] = torch.cat([gate_up[ffn], gate_up[cfg.intermediate_size + ffn]])
        out[o + "mlp.down.weight"] = sd[p + "mlp.down.weight"][:, ffn].contiguous()
        kv = imp.heads[i].topk(groups).indices.sort().values
        q_heads = _members(kv, group)  # the query heads sharing those key/value heads
        q_rows, kv_rows = cfg.n_head * cfg.head_dim, cfg.n_kv_head * cfg.head_dim
        qkv = sd[p + "attn.qkv.weight"]
        out[o + "attn.qkv.weight"] = torch.cat(
            [
                qkv[_members(q_heads, cfg.head_dim)],
                qkv[q_rows + _members(kv, cfg.head_dim)],
                qkv[q_rows + kv_rows + _members(kv, cfg.head_dim)],
            ]
        )
        out[o + "attn.proj.weight"] = sd[p + "attn.proj.weight"][:, _members(q_heads, cfg.head_dim)].contiguous()
        for norm in ("attn_norm.weight", "mlp_norm.weight"):
            out[o + norm] = sd[p + norm]
    return new, out


def _members(units: torch.Tensor, size: int) -> torch.Tensor:
    """The indices of these units' members, each unit `size` consecutive ones: a head's weight rows in our
    layout, or a key/value head's query heads."""
    return (units[:, None] * size + torch.arange(size)).flatten()
