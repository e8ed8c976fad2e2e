"""Quantise float weights to GGML's K-quant blocks (Q4_K, Q5_K, Q6_K), which the gguf package can read
(`gguf.quants.dequantize`) but not write.

Plain round-to-nearest with the scales taken from each sub-block's range, as the reference
quantiser's simplest mode; no importance matrix and no search over scales, so the error is a little
above llama.cpp's for the same format. Bit layouts as in gguf's dequantisers (and kernels/qmatmul.cpp).
"""

from __future__ import annotations

import numpy as np

QK_K = 256
BLOCK_BYTES = {"Q4_K": 144, "Q5_K": 176, "Q6_K": 210}


def quantize_k(w: np.ndarray, kind: str) -> np.ndarray:
    """float weights [rows, k] (k a multiple of 256) -> uint8 blocks [rows, k / 256 * block bytes]."""
    if kind not in BLOCK_BYTES:
        raise ValueError(f"{kind} is not a K-quant; choose one of {', '.join(BLOCK_BYTES)}")
    rows, k = w.shape
    if k % QK_K:
        raise ValueError(f"a K-quant row needs a multiple of {QK_K} weights, not {k}")
    x = w.astype(np.float32).reshape(-1, QK_K)  # one super-block a row
    out = _q6_k(x) if kind == "Q6_K" else _q45_k(x, 5 if kind == "Q5_K" else 4)
    return out.reshape(rows, -1)


def _half(v: np.ndarray) -> np.ndarray:
    return v.astype(np.float16).view(np.uint8).reshape(*v.shape, 2)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def _q45_k(x: np.ndarray, bits: int) -> np.ndarray:
    """w = d * sc * q - dmin * mn: 8 sub-blocks of 32, 6-bit sc and mn, q below 2**bits."""
    top = (1 << bits) - 1
    sub = x.reshape(-1, 8, 32)
    mins = np.maximum(0.0, -sub.min(-1))  # what the sub-block's offset has to carry, >= 0
    scales = (sub.max(-1) + mins) / top
    d = (scales.max(-1) / 63).astype(np.float16).astype(np.float32)
    dmin = (mins.max(-1) / 63).astype(np.float16).astype(np.float32)
    sc = np.clip(np.rint(_ratio(scales, d[:, None])), 0, 63).astype(np.uint8)
    mn = np.clip(np.rint(_ratio(mins, dmin[:, None])), 0, 63).astype(np.uint8)
    step = d[:, None] * sc  # [blocks, 8]
    q = np.clip(np.rint(_ratio(sub + (dmin[:, None] * mn)[..., None], step[..., None])), 0, top).astype(np.uint8)

    packed = np.zeros((x.shape[0], 12), np.uint8)  # 6-bit scales and mins, as get_scale_min_k4 reads them
    packed[:, 0:4] = sc[:, :4] | ((sc[:, 4:] >> 4) << 6)
    packed[:, 4:8] = mn[:, :4] | ((mn[:, 4:] >> 4) << 6)
    packed[:, 8:12] = (sc[:, 4:] & 15) | ((mn[:, 4:] & 15) << 4)
    pairs = q.reshape(-1, 4, 2, 32)  # sub-blocks 2c and 2c + 1 share bytes: low and high nibble
    qs = ((pairs[:, :, 0] & 15) | ((pairs[:, :, 1] & 15) << 4)).reshape(-1, 128)
    parts = [_half(d), _half(dmin), packed]
    if bits == 5:
        fifth = (q >> 4).astype(np.uint8)  # [blocks, 8, 32]: bit s of qh[l] is sub-block s's weight l
        parts.append((fifth << np.arange(8, dtype=np.uint8)[:, None]).sum(1, dtype=np.uint8))
    parts.append(qs)
    return np.concatenate([p.reshape(x.shape[0], -1) for p in parts], axis=1)


def _q6_k(x: np.ndarray) -> np.ndarray:
    """w = d * sc * (q - 32): 16 sub-blocks of 16, int8 sc, q below 64."""
    sub = x.reshape(-1, 16, 16)
    # the signed scale that puts each sub-block's largest weight at q - 32 = -32, the side with room
    # (a positive scale would put it at +32, past the 31 that six bits hold)
    peak = np.take_along_axis(sub, np.abs(sub).argmax(-1)[..., None], -1)[..., 0]
    scales = -peak / 32
    d = (np.abs(scales).max(-1) / 127).astype(np.float16).astype(np.float32)
    sc = np.clip(np.rint(_ratio(scales, d[:, None])), -127, 127).astype(np.int8)
    step = d[:, None] * sc
    q = (np.clip(np.rint(_ratio(sub, step[..., None])), -32, 31) + 32).astype(np.uint8).reshape(-1, 2, 4, 32)
    # each half of 128 weights: four runs of 32; ql holds runs 0|2 and 1|3 as nibbles, qh their top bits
    nib = q & 15
    ql = np.concatenate([nib[:, :, 0] | (nib[:, :, 2] << 4), nib[:, :, 1] | (nib[:, :, 3] << 4)], -1)
    qh = sum(((q[:, :, r] >> 4) & 3) << (2 * r) for r in range(4)).astype(np.uint8)
    return np.concatenate([ql.reshape(-1, 128), qh.reshape(-1, 64), sc.view(np.uint8), _half(d).reshape(-1, 2)], axis=1)
