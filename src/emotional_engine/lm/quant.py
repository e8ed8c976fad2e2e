"""Weight formats for CPU inference, and the row padding that keeps them batch invariant.

- native: the projections stay in the GGUF file's own blocks (Q4_0, Q4_1, Q8_0, Q4_K, Q5_K, Q6_K) and are multiplied
  from them by the C++ kernels (lm/kernels): a quarter to a half of fp16's bytes a token. A linear
  whose blocks the kernels do not read, or every linear when the kernels could not be built, is fp16.
- q8_0, q4_0, q4_1, q4_k, q5_k, q6_k: the weights requantised at load to that block format (from the
  file's weights as loaded; a K-quant row must be whole super-blocks of 256, so a projection whose
  input is not takes Q8_0, as llama.cpp does) and multiplied by the same kernels: for comparing the
  formats on one model. Requantising a 4-bit file to another format only adds error.
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
from gguf import GGMLQuantizationType, quants

from emotional_engine.lm import kernels
from emotional_engine.lm.gguf import Parts
from emotional_engine.lm.kquants import BLOCK_BYTES, QK_K, quantize_k
from emotional_engine.lm.model import Llama

REQUANTISED = {"q8_0": "Q8_0", "q4_0": "Q4_0", "q4_1": "Q4_1", "q4_k": "Q4_K", "q5_k": "Q5_K", "q6_k": "Q6_K"}
WEIGHT_FORMATS = ("native", "fp32", "fp16", *REQUANTISED)


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


class NativeLinear(nn.Module):
    """A bias-free Linear multiplied straight from GGUF blocks by the kernels. `parts` are its rows as
    (GGML type, uint8 blocks [rows, row bytes]), one part unless the file mixed types in a fused
    projection. Blocks are repacked eight rows at a time (`ops.qmatmul_x8`, 2-3x faster) where the CPU
    has AVX2, multiplied row by row (`ops.qmatmul`) otherwise."""

    def __init__(self, ops, parts: Parts, in_features: int):
        super().__init__()
        self.ops, self.in_features = ops, in_features
        self.qtypes = [qtype for qtype, _ in parts]
        self.rows = [blocks.shape[0] for _, blocks in parts]
        self.out_features = sum(self.rows)
        self.grouped = ops.path() != "portable"
        # one copy of the weights: repacked, or the file's blocks for the portable path
        self.weights = [ops.repack_x8(b, q) if self.grouped else b for q, b in parts]

    def forward(self, x):
        flat = x.reshape(-1, self.in_features).float()
        if self.grouped:
            ys = [self.ops.qmatmul_x8(flat, w, n) for w, n in zip(self.weights, self.rows)]
        else:
            ys = [self.ops.qmatmul(flat, w, q) for w, q in zip(self.weights, self.qtypes)]
        y = ys[0] if len(ys) == 1 else torch.cat(ys, dim=1)
        return y.reshape(*x.shape[:-1], self.out_features)

    @property
    def x8(self) -> tuple[torch.Tensor, int] | None:
        """(repacked blocks, out features) where one `qmatmul_x8` computes this linear (model.Block.x8)."""
        return (self.weights[0], self.out_features) if self.grouped and len(self.weights) == 1 else None

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, ggml types {self.qtypes}"


def _named_linears(model: Llama) -> list[tuple[str, nn.Module, str]]:
    """(the linear's name in the state dict and in `native`, its parent module, its attribute)."""
    out = []
    for i, block in enumerate(model.layers):
        for part, attr in (("attn", "qkv"), ("attn", "proj"), ("mlp", "gate_up"), ("mlp", "down")):
            out.append((f"layers.{i}.{part}.{attr}", getattr(block, part), attr))
    return out + [("lm_head", model, "lm_head")]


def _linears(model: Llama) -> list[tuple[nn.Module, str]]:
    return [(parent, attr) for _, parent, attr in _named_linears(model)]


def apply_weight_format(model: Llama, fmt: str, native: dict[str, Parts] | None = None) -> Llama:
    """Swap every projection (and the output head, even when tied) to `fmt`, in place. For `native`,
    `native` holds the file's blocks by linear name (gguf.native_blocks); the others become fp16. A
    REQUANTISED format quantises the model's own weights to its blocks first."""
    if fmt not in WEIGHT_FORMATS:
        raise ValueError(f"weight format {fmt!r} is unknown; choose one of {', '.join(WEIGHT_FORMATS)}")
    blocks = fmt == "native" or fmt in REQUANTISED
    ee = kernels.ops() if blocks else None
    if blocks and ee is None:
        fmt = "fp16"  # kernels.ops() has said why
    elif fmt in REQUANTISED:
        native = blocks_from_weights(model, REQUANTISED[fmt])
    if fmt == "fp16" or ee is not None:
        for key, parent, name in _named_linears(model):
            lin = getattr(parent, name)
            if not isinstance(lin, nn.Linear):
                continue
            if ee is not None and key in (native or {}):
                setattr(parent, name, NativeLinear(ee, native[key], lin.in_features))
            else:
                setattr(parent, name, FP16Linear(lin.weight))  # a tied head keeps the fp32 embedding
        if not any(isinstance(getattr(p, n), NativeLinear) for p, n in _linears(model)):
            fmt = "fp16"  # no block the kernels read (or a LoRA merged into the weights)
    model.weight_format = fmt
    model.use_kernels(ee or kernels.ops())
    model.row_multiple = batch_invariant_row_multiple(model)
    return model


def quantise(w, ggml_type: str):
    """float32 [rows, k] numpy weights -> uint8 blocks of `ggml_type` (a name in kernels.GGML_TYPES):
    gguf's quantiser for the 32-weight formats, ours (lm/kquants) for the K-quants gguf cannot write."""
    if ggml_type in BLOCK_BYTES:
        return quantize_k(w, ggml_type)
    return quants.quantize(w, GGMLQuantizationType[ggml_type])


def blocks_from_weights(model: Llama, ggml_type: str) -> dict[str, Parts]:
    """The model's projections quantised to `ggml_type` (any of kernels.GGML_TYPES), by linear name, for
    `apply_weight_format(model, "native", ...)`: weights that came from no file. A K-quant needs rows of
    whole 256-weight super-blocks; a projection whose input is not takes Q8_0."""
    out = {}
    for key, parent, name in _named_linears(model):
        lin = getattr(parent, name)
        w = lin.weight.detach().float().numpy()
        kind = "Q8_0" if ggml_type in BLOCK_BYTES and lin.in_features % QK_K else ggml_type
        out[key] = [(kernels.GGML_TYPES[kind], torch.from_numpy(quantise(w, kind)))]
    return out


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
