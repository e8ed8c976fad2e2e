"""Weight formats for CPU inference, and the row padding that keeps them batch invariant.

- fp32: the reference.
- fp16: weights stored in half precision and multiplied by fbgemm's packed fp16 GEMM with fp32
  activations and accumulation (`quantized::linear_dynamic_fp16`): half the memory traffic of
  fp32 and no activation quantisation, so no scale is shared across the batch.

GEMM kernels choose their blocking by row count, and some row counts round differently from
others. `batch_invariant_row_multiple` measures, for the kernels actually in use on this CPU, the
smallest row multiple at which a row's result no longer depends on how many rows share the call;
the model pads its packed batches to that multiple.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from emotional_engine.lm.model import Llama

WEIGHT_FORMATS = ("fp32", "fp16")


class FP16Linear(nn.Module):
    """A bias-free Linear whose weight lives in fbgemm's packed fp16 layout."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.packed = torch.ops.quantized.linear_prepack_fp16(weight.detach().float().contiguous(), None)

    def forward(self, x):
        return torch.ops.quantized.linear_dynamic_fp16(x, self.packed)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, fp16"


def _linears(model: Llama) -> list[tuple[nn.Module, str]]:
    out = []
    for block in model.layers:
        out += [(block.attn, "qkv"), (block.attn, "proj"), (block.mlp, "gate_up"), (block.mlp, "down")]
    return out + [(model, "lm_head")]


def apply_weight_format(model: Llama, fmt: str) -> Llama:
    """Swap every projection (and the output head, even when tied) to `fmt`, in place."""
    if fmt not in WEIGHT_FORMATS:
        raise ValueError(f"weight format {fmt!r} is unknown; choose one of {', '.join(WEIGHT_FORMATS)}")
    if fmt == "fp16":
        for parent, name in _linears(model):
            lin = getattr(parent, name)
            if isinstance(lin, nn.Linear):
                setattr(parent, name, FP16Linear(lin.weight))  # a tied head keeps the fp32 embedding
    model.weight_format = fmt
    model.row_multiple = batch_invariant_row_multiple(model)
    return model


@torch.inference_mode()
def batch_invariant_row_multiple(model: Llama, max_rows: int = 64, candidates=(1, 2, 3, 4, 6, 8, 12, 16)) -> int:
    """Smallest m such that, for every distinct projection, rows computed in calls of any multiple
    of m rows (up to `max_rows`, plus one prefill-sized call for the inner projections; the head
    only ever sees one row per sequence) equal the same rows computed in one call."""
    seen, layers = set(), []
    for parent, name in _linears(model):
        lin = getattr(parent, name)
        key = (type(lin), lin.in_features, lin.out_features, name == "lm_head")
        if key not in seen:
            seen.add(key)
            layers.append((lin, name == "lm_head"))
    g = torch.Generator().manual_seed(0)
    for m in candidates:
        small = list(range(m, max_rows + 1, m))
        if all(
            _invariant(lin, small if head else [*small, 4 * max_rows - (4 * max_rows) % m], g) for lin, head in layers
        ):
            return m
    raise RuntimeError("no row multiple makes this CPU's GEMM batch invariant; use weight format fp32")


def _invariant(lin: nn.Module, sizes: list[int], g: torch.Generator) -> bool:
    x = torch.randn(max(sizes), lin.in_features, generator=g)
    full = lin(x)
    return all(torch.equal(lin(x[:n]), full[:n]) for n in sizes)
