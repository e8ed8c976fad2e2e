"""Our K-quant quantiser, read back by the gguf package's dequantisers (written independently)."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType, quants

from emotional_engine.lm.kquants import BLOCK_BYTES, quantize_k


def weights(seed: int, rows: int = 16, k: int = 512) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((rows, k)) * rng.uniform(0.01, 2.0, (rows, 1))).astype(np.float32)
    w[:, :40] += rng.uniform(-1, 1, (rows, 1))  # sub-blocks all one sign: the offset is a min to carry
    return w


@pytest.mark.parametrize(("kind", "rms", "peak"), [("Q4_K", 0.09, 0.08), ("Q5_K", 0.045, 0.04), ("Q6_K", 0.025, 0.02)])
def test_quantised_blocks_read_back_close_to_the_weights(kind, rms, peak):
    w = weights(1)
    blocks = quantize_k(w, kind)
    assert blocks.dtype == np.uint8 and blocks.shape == (16, 2 * BLOCK_BYTES[kind])
    back = quants.dequantize(blocks, GGMLQuantizationType[kind])
    # error relative to each row's size (rows differ 200x in scale): a wrong bit layout gives ~1
    err = np.sqrt(((back - w) ** 2).mean(1) / (w**2).mean(1))
    assert err.max() < rms, err.max()
    # and no weight far off: Q6_K's largest weights go to -32, the side six signed bits can reach
    worst = (np.abs(back - w).max(1) / np.abs(w).max(1)).max()
    assert worst < peak, worst


def test_more_bits_quantise_closer_than_fewer():
    w = weights(2)
    errors = [np.abs(quants.dequantize(quantize_k(w, k), GGMLQuantizationType[k]) - w).mean() for k in BLOCK_BYTES]
    assert errors[0] > errors[1] > errors[2]  # Q4_K, Q5_K, Q6_K


@pytest.mark.parametrize("kind", sorted(BLOCK_BYTES))
def test_zero_and_constant_rows_survive(kind):
    w = np.zeros((3, 256), np.float32)
    w[1] = 0.25
    w[2, ::2] = -1.5
    back = quants.dequantize(quantize_k(w, kind), GGMLQuantizationType[kind])
    assert np.array_equal(back[0], w[0]) and np.isfinite(back).all()
    assert np.abs(back[1:] - w[1:]).max() <= 0.05 * 1.5


def test_bad_requests_say_what_is_wrong():
    with pytest.raises(ValueError, match="multiple of 256"):
        quantize_k(np.zeros((2, 320), np.float32), "Q4_K")
    with pytest.raises(ValueError, match="not a K-quant"):
        quantize_k(np.zeros((2, 256), np.float32), "Q4_0")
