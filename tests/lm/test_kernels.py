"""The C++ kernels on GGUF blocks, against dequantise-then-matmul: every block format, edge sizes, odd
row counts, one and two threads, the repacked kernels (VNNI and AVX2) and the portable row-by-row one,
and batch invariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, quants

from emotional_engine.lm.kernels import GGML_TYPES

FORMATS = sorted(GGML_TYPES)


K_QUANT_HALVES = {"Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}  # where a super-block keeps d (and dmin)


def width(k: int, fmt: str) -> int:
    """k rounded up to whole blocks of the format: 32 weights, or a K-quant's super-block of 256."""
    return -(-k // 256) * 256 if fmt in K_QUANT_HALVES else k


def quantised(rng, n: int, k: int, fmt: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Random weights [n, k] as the format's blocks (uint8 rows) and dequantised again (float32) by the
    gguf package. gguf cannot quantise to the K-quants, so their blocks are random bytes (every scale,
    min and quant bit pattern occurs) with sane halves for d and dmin."""
    qtype = GGMLQuantizationType[fmt]
    if fmt in K_QUANT_HALVES:
        row_bytes = k // 256 * quants.GGML_QUANT_SIZES[qtype][1]
        blocks = rng.integers(0, 256, (n, row_bytes), dtype=np.uint8)
        per_block = blocks.reshape(n, k // 256, -1)
        for at in K_QUANT_HALVES[fmt]:
            halves = rng.uniform(1e-4, 0.02, per_block.shape[:2]).astype(np.float16)
            per_block[:, :, at : at + 2] = halves.view(np.uint8).reshape(*halves.shape, 2)
    else:
        w = (rng.standard_normal((n, k)) * rng.uniform(0.01, 2.0, (n, 1))).astype(np.float32)
        w[:, :32] += rng.uniform(-1, 1)  # an offset Q4_1's minimum has to carry
        blocks = quants.quantize(w, qtype)
    return torch.from_numpy(blocks), torch.from_numpy(quants.dequantize(blocks, qtype))


def q8_activations(x: torch.Tensor) -> torch.Tensor:
    """x as the kernels see it: int8 per block of 32 with one scale (amax / 127), back to float."""
    blocks = x.reshape(x.shape[0], -1, 32).double()
    d = blocks.abs().amax(-1, keepdim=True) / 127
    q = torch.where(d > 0, torch.round(blocks / torch.where(d > 0, d, 1)), 0)
    return (q * d).reshape(x.shape)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("batch", "n", "k"), [(1, 1, 32), (3, 7, 64), (1, 33, 576), (16, 129, 96), (5, 64, 1536)])
@pytest.mark.parametrize("threads", [1, 2])
def test_every_format_matches_dequantise_then_matmul(ee, fmt, batch, n, k, threads):
    k = width(k, fmt)
    rng = np.random.default_rng(batch * 1000 + n + k)
    blocks, w = quantised(rng, n, k, fmt)
    x = torch.from_numpy(rng.standard_normal((batch, k)).astype(np.float32))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        portable = ee.qmatmul(x, blocks, GGML_TYPES[fmt])
        # eight rows at once from repacked blocks (last group padded with zeros); the VNNI and AVX2
        # paths sum the same integers in the same lanes: equal to the bit
        packed = ee.repack_x8(blocks, GGML_TYPES[fmt])
        grouped = ee.qmatmul_x8(x, packed, n)
        assert torch.equal(ee.qmatmul_x8_avx2(x, packed, n), grouped)
    finally:
        torch.set_num_threads(before)
    exact = (q8_activations(x) @ w.double().T).float()  # the same sums in double precision
    scale = (x.abs() @ w.abs().T).clamp_min(1e-6)  # the size of the terms summed
    assert portable.shape == (batch, n) and portable.dtype == torch.float32
    assert ((portable - exact).abs() / scale).max() < 1e-5
    assert grouped.shape == (batch, n) and ((grouped - exact).abs() / scale).max() < 1e-5
    # and the activations' quantisation costs little against the float product
    assert ((grouped - x @ w.T).abs() / scale).max() < 0.02


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_rows_result_does_not_depend_on_its_batch_mates(ee, fmt):
    rng = np.random.default_rng(7)
    blocks, _ = quantised(rng, 67, 512, fmt)
    x = torch.from_numpy(rng.standard_normal((9, 512)).astype(np.float32))
    together = ee.qmatmul(x, blocks, GGML_TYPES[fmt])
    for i in range(9):
        assert torch.equal(ee.qmatmul(x[i : i + 1], blocks, GGML_TYPES[fmt])[0], together[i])
        assert torch.equal(ee.qmatmul(x[i:], blocks, GGML_TYPES[fmt])[0], together[i])
    packed = ee.repack_x8(blocks, GGML_TYPES[fmt])
    together = ee.qmatmul_x8(x, packed, 67)
    for i in range(9):
        assert torch.equal(ee.qmatmul_x8(x[i : i + 1], packed, 67)[0], together[i])
        assert torch.equal(ee.qmatmul_x8(x[i:], packed, 67)[0], together[i])


def test_bad_shapes_and_types_are_refused_with_the_reason(ee):
    blocks = torch.zeros(4, 18, dtype=torch.uint8)  # Q4_0, K = 32
    with pytest.raises(RuntimeError, match="multiple of 32"):
        ee.qmatmul(torch.zeros(1, 33), blocks, GGML_TYPES["Q4_0"])
    with pytest.raises(RuntimeError, match="bytes a row"):
        ee.qmatmul(torch.zeros(1, 64), blocks, GGML_TYPES["Q4_0"])
    with pytest.raises(RuntimeError, match="multiple of 256"):  # a K-quant's super-block
        ee.qmatmul(torch.zeros(1, 32), torch.zeros(4, 144, dtype=torch.uint8), GGML_TYPES["Q4_K"])
    with pytest.raises(RuntimeError, match="does not fit"):  # Q4_K repacked, x 32 wide
        ee.qmatmul_x8(torch.zeros(1, 32), ee.repack_x8(torch.zeros(4, 144, dtype=torch.uint8), GGML_TYPES["Q4_K"]), 4)
    with pytest.raises(RuntimeError, match="unsupported block type"):
        ee.qmatmul(torch.zeros(1, 32), blocks, 99)
    with pytest.raises(RuntimeError, match="float32"):
        ee.qmatmul(torch.zeros(1, 32, dtype=torch.float64), blocks, GGML_TYPES["Q4_0"])


def test_a_kernel_build_that_fails_is_said_once_and_gives_none(monkeypatch, caplog):
    """No compiler (or any other build failure): the runtime is told None and keeps its PyTorch path."""
    from torch.utils import cpp_extension

    from emotional_engine.lm import kernels

    def no_compiler(**kw):
        raise RuntimeError("Ninja is required to load C++ extensions")

    monkeypatch.setattr(cpp_extension, "load", no_compiler)
    kernels.ops.cache_clear()
    try:
        assert kernels.ops() is None and kernels.ops() is None
        said = [r for r in caplog.records if "C++ kernels are not available" in r.message]
        assert len(said) == 1 and "Ninja is required" in said[0].message
    finally:
        kernels.ops.cache_clear()
