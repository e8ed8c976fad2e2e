"""The decoder: cached/packed passes against the plain causal pass, and batch invariance."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from gguf import GGMLQuantizationType, quants

from emotional_engine.lm.kv_cache import KVCache, Segment
from emotional_engine.lm.quant import _linears, quantise
from tiny_lm import FORMATS, base_model, formatted, make_model, tiny_config

pytestmark = pytest.mark.usefixtures("torch_threads")

# logits here are O(10): float32 reordering noise (masked vs causal SDPA paths) reaches ~1.5e-5
ATOL, RTOL = 5e-5, 1e-5


def tokens(n: int, seed: int, vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(seed))


def reference_logits(model, idx: torch.Tensor) -> torch.Tensor:
    """An independent, loop-based implementation of the same Llama math for one sequence (T,)."""
    cfg = model.config
    T, hs, nh, nkv = idx.shape[0], cfg.head_dim, cfg.n_head, cfg.n_kv_head
    inv = 1.0 / cfg.rope_theta ** (torch.arange(0, hs, 2, dtype=torch.float64) / hs)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None]  # (T, hs/2)
    cos, sin = ang.cos().float(), ang.sin().float()

    def rope(x):  # (T, heads, hs), rotate-half pairs (i, i + hs/2)
        a, b = x[..., : hs // 2], x[..., hs // 2 :]
        c, s = cos[:, None], sin[:, None]
        return torch.cat([a * c - b * s, b * c + a * s], dim=-1)

    def rms(x, w):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + cfg.rms_eps) * w

    x = model.tok_embeddings.weight[idx]
    for blk in model.layers:
        h = rms(x, blk.attn_norm.weight)
        qkv = h @ blk.attn.qkv.weight.T
        q, k, v = qkv.split([nh * hs, nkv * hs, nkv * hs], dim=-1)
        q, k, v = rope(q.view(T, nh, hs)), rope(k.view(T, nkv, hs)), v.view(T, nkv, hs)
        y = torch.empty(T, nh, hs)
        for head in range(nh):
            kv = head // (nh // nkv)  # grouped-query attention: consecutive query heads share a kv head
            att = (q[:, head] @ k[:, kv].T) / math.sqrt(hs)
            att = att.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
            y[:, head] = att.softmax(-1) @ v[:, kv]
        x = x + y.reshape(T, nh * hs) @ blk.attn.proj.weight.T
        h = rms(x, blk.mlp_norm.weight)
        gate, up = (h @ blk.mlp.gate_up.weight.T).split(cfg.intermediate_size, dim=-1)
        x = x + (F.silu(gate) * up) @ blk.mlp.down.weight.T
    return rms(x, model.norm.weight) @ model.lm_head.weight.T


@pytest.mark.parametrize("n_kv_head", [1, 2, 4], ids=["mqa", "gqa", "mha"])
@torch.inference_mode()
def test_plain_forward_matches_reference(n_kv_head):
    model = make_model(tiny_config(n_kv_head=n_kv_head), seed=3)
    idx = tokens(23, 1, model.config.vocab_size)
    logits, loss = model(idx[None])
    assert logits.shape == (1, 23, model.config.vocab_size) and loss is None
    ref = reference_logits(model, idx)
    torch.testing.assert_close(logits[0], ref, atol=1e-4, rtol=1e-4)
    assert logits.std() > 1.0  # the weights are big enough for a non-trivial distribution


@torch.inference_mode()
def test_forward_batch_and_loss(model):
    a, b = tokens(17, 1, model.config.vocab_size), tokens(17, 2, model.config.vocab_size)
    both, _ = model(torch.stack([a, b]))
    torch.testing.assert_close(both[0], model(a[None])[0][0], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(both[1], model(b[None])[0][0], atol=ATOL, rtol=RTOL)
    targets = torch.roll(a, -1)[None].clone()
    targets[0, -1] = -1  # ignored
    _, loss = model(a[None], targets)
    expect = F.cross_entropy(both[0][:-1], a[1:])
    torch.testing.assert_close(loss, expect, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("n_kv_head", [1, 2, 4], ids=["mqa", "gqa", "mha"])
@torch.inference_mode()
def test_cached_decoding_equals_uncached_forward(n_kv_head):
    """Prefill via forward_packed, then one token at a time (the T == 1 decode path)."""
    model = make_model(tiny_config(n_kv_head=n_kv_head), seed=5)
    idx = tokens(40, 7, model.config.vocab_size)
    full = model(idx[None])[0][0]  # (T, vocab)
    cache = KVCache(model.config)
    n_prefill = 9
    out = model.forward_packed(idx[:n_prefill], [Segment(cache, n_prefill)])
    assert out.shape == (1, model.config.vocab_size)
    torch.testing.assert_close(out[0], full[n_prefill - 1], atol=ATOL, rtol=RTOL)
    assert cache.length == n_prefill and cache.tokens == idx[:n_prefill].tolist()
    for t in range(n_prefill, idx.shape[0]):
        out = model.forward_packed(idx[t : t + 1], [Segment(cache, 1)])
        torch.testing.assert_close(out[0], full[t], atol=ATOL, rtol=RTOL, msg=f"position {t}")
    assert cache.length == idx.shape[0] and cache.tokens == idx.tolist()


@torch.inference_mode()
def test_cache_grows_past_its_granule(model):
    """Decoding across a capacity reallocation keeps the earlier keys and values."""
    idx = tokens(model.config.context_length, 11, model.config.vocab_size)
    cache = KVCache(model.config, capacity=8)
    model.forward_packed(idx[:6], [Segment(cache, 6)])
    for t in range(6, 12):
        model.forward_packed(idx[t : t + 1], [Segment(cache, 1)])
    assert cache.capacity >= 12
    last = model.forward_packed(idx[12:100], [Segment(cache, 88)])  # another reallocation
    full = model(idx[None, :100])[0][0]
    torch.testing.assert_close(last[0], full[99], atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("split", [1, 5, 12])
@torch.inference_mode()
def test_chunked_prefill_equals_one_shot(model, split):
    idx = tokens(20, 3, model.config.vocab_size)
    one = KVCache(model.config)
    a = model.forward_packed(idx, [Segment(one, 20)])
    two = KVCache(model.config)
    model.forward_packed(idx[:split], [Segment(two, split)])
    b = model.forward_packed(idx[split:], [Segment(two, 20 - split)])  # chunk with L > 0: masked path
    torch.testing.assert_close(b, a, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(two.k[:, :, :20], one.k[:, :, :20], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(two.v[:, :, :20], one.v[:, :, :20], atol=ATOL, rtol=RTOL)
    assert two.tokens == one.tokens == idx.tolist()
    # and decoding continues identically from both
    nxt = tokens(1, 4, model.config.vocab_size)
    torch.testing.assert_close(
        model.forward_packed(nxt, [Segment(two, 1)]), model.forward_packed(nxt, [Segment(one, 1)]), atol=ATOL, rtol=RTOL
    )


@torch.inference_mode()
def test_truncate_then_refeed(model):
    """Truncating a cache (prefix reuse) and feeding new tokens equals a fresh prefill."""
    idx = tokens(30, 8, model.config.vocab_size)
    other = tokens(10, 9, model.config.vocab_size)
    cache = KVCache(model.config)
    model.forward_packed(idx, [Segment(cache, 30)])
    cache.truncate(20)
    assert cache.length == 20 and cache.tokens == idx[:20].tolist()
    got = model.forward_packed(other, [Segment(cache, 10)])
    seq = torch.cat([idx[:20], other])
    torch.testing.assert_close(got[0], model(seq[None])[0][0, -1], atol=ATOL, rtol=RTOL)


@torch.inference_mode()
def test_packed_segments_match_separate(model):
    """Several sequences with mixed prefill/decode in one pass give each its own result."""
    V = model.config.vocab_size
    seqs = [tokens(n, 20 + n, V) for n in (3, 8, 1, 13)]
    caches = [KVCache(model.config) for _ in seqs]
    # first give two of them some history so the pack mixes L == 0, L > 0 and T == 1 segments
    model.forward_packed(seqs[1][:5], [Segment(caches[1], 5)])
    model.forward_packed(seqs[3][:12], [Segment(caches[3], 12)])
    feeds = [seqs[0], seqs[1][5:], seqs[2], seqs[3][12:]]
    out = model.forward_packed(torch.cat(feeds), [Segment(c, f.shape[0]) for c, f in zip(caches, feeds)])
    assert out.shape == (4, V)
    for i, s in enumerate(seqs):
        torch.testing.assert_close(out[i], model(s[None])[0][0, -1], atol=ATOL, rtol=RTOL, msg=f"seq {i}")
        assert caches[i].length == s.shape[0] and caches[i].tokens == s.tolist()


# ---- batch invariance -------------------------------------------------------------------------


@pytest.fixture(scope="module", params=FORMATS)
def formatted_pair(request, model):
    """(the fp32 model, the same in one of FORMATS)"""
    base = base_model(model, request.param)
    return base, formatted(base, request.param)


def _decode_run(model, target: torch.Tensor, others: list[torch.Tensor], steps: int = 6, position: int = 0):
    """Prefill `target` (and `others`) in one packed pass, then decode `steps` tokens greedily,
    the others decoding alongside; returns the target's logits at every step."""
    caches = [KVCache(model.config) for _ in range(len(others) + 1)]
    seqs = list(others)
    seqs.insert(position, target)
    feeds = list(seqs)
    rows = []
    for _ in range(steps):
        out = model.forward_packed(torch.cat(feeds), [Segment(c, f.shape[0]) for c, f in zip(caches, feeds)])
        rows.append(out[position].clone())
        feeds = [out[i].argmax().view(1) for i in range(len(seqs))]
    return rows


@pytest.mark.parametrize("n_others", [1, 3, 7])
@torch.inference_mode()
def test_batch_invariance_bitwise(formatted_pair, n_others):
    m = formatted_pair[1]
    V = m.config.vocab_size
    target = tokens(11, 100, V)
    alone = _decode_run(m, target, [])
    others = [tokens(2 + 3 * i, 200 + i, V) for i in range(n_others)]  # lengths 2, 5, 8, ...
    batched = _decode_run(m, target, others, position=min(1, n_others))
    for step, (a, b) in enumerate(zip(alone, batched)):
        assert torch.equal(a, b), f"{m.weight_format}: step {step} differs by {(a - b).abs().max().item()}"


@torch.inference_mode()
def test_every_format_is_close_to_fp32_on_the_same_weights(formatted_pair):
    """fp16 against the fp32 model; native against the fp32 model holding its blocks dequantised (what
    differs is then only the kernels' Q8 activations)."""
    model, formatted_model = formatted_pair
    idx = tokens(12, 1, model.config.vocab_size)
    reference = model
    if formatted_model.weight_format == "native":
        reference = copy.deepcopy(model)
        for parent, name in _linears(formatted_model):
            kind = GGMLQuantizationType(getattr(parent, name).qtypes[0])
            mine = _module_like(reference, formatted_model, parent, name)
            w = quants.dequantize(quantise(mine.weight.detach().numpy(), kind.name), kind)  # as formatted did
            mine.weight = torch.nn.Parameter(torch.from_numpy(w))
    ref = reference(idx[None])[0]
    got = formatted_model(idx[None])[0]
    scale = ref.abs().max().item()
    # native: the activations are 8-bit per block of 32 (about 0.2% a product), compounded by this tiny
    # model's random weights, which amplify (its logits reach 9)
    tol = {"fp32": 1e-5, "fp16": 2e-2}.get(formatted_model.weight_format, 5e-2)
    assert (got - ref).abs().max().item() <= tol * scale


def _module_like(model, other, parent, name):
    """The linear of `model` at the place `parent.name` has in `other` (same architecture)."""
    if name == "lm_head":  # untied, so that its weight can change alone
        model.lm_head = torch.nn.Linear(model.config.n_embd, model.config.vocab_size, bias=False)
        model.lm_head.weight = torch.nn.Parameter(model.tok_embeddings.weight.detach().clone())
        return model.lm_head
    for mine, theirs in zip(model.layers, other.layers):
        for part in ("attn", "mlp"):
            if getattr(theirs, part) is parent:
                return getattr(getattr(mine, part), name)
    raise KeyError(name)
