"""The decode pass's fused ops (lm/kernels/decode.cpp) against the PyTorch they replace, and the model's
serving pass on them against the same model on its PyTorch path: every weight format, mixed prefill and
decode, an emotion adapter in the layers, batch invariance and the fallback."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from emotional_engine.lm import emotion_attention as ea
from emotional_engine.lm.kv_cache import KVArena, KVCache, Segment
from emotional_engine.lm.model import Llama, Rotary, apply_rotary
from emotional_engine.lm.quant import apply_weight_format
from tiny_lm import FORMATS, base_model, formatted, make_model, tiny_config

pytestmark = pytest.mark.usefixtures("torch_threads")


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ---- the ops --------------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [1, 7, 64, 576])
def test_rms_norm_and_the_fused_residual_add(ee, width):
    x, delta, w = randn(5, width, seed=1), randn(5, width, seed=2), randn(width, seed=3)

    def rms(v):
        return v / torch.sqrt(v.double().pow(2).mean(-1, keepdim=True) + 1e-5).float() * w

    torch.testing.assert_close(ee.rms_norm(x, w, 1e-5), rms(x), atol=1e-5, rtol=1e-5)
    stream = x.clone()
    normed = ee.add_rms_norm_(stream, delta, w, 1e-5)
    assert torch.equal(stream, x + delta)  # the residual stream itself takes the add
    torch.testing.assert_close(normed, rms(x + delta), atol=1e-5, rtol=1e-5)


def test_rope_rotates_a_strided_view_in_place(ee):
    cfg = tiny_config(head_dim=16)
    cos, sin = Rotary(cfg).tables(40)
    pos = torch.tensor([0, 1, 17, 39])
    cos, sin = cos[pos][:, None], sin[pos][:, None]
    qkv = randn(4, 7 * 16)
    qk = qkv[:, : 5 * 16].view(4, 5, 16)  # queries and keys of a fused projection: rows 112 apart
    expected = apply_rotary(qk.clone(), cos, sin)
    values = qkv[:, 5 * 16 :].clone()
    ee.rope_(qk, cos, sin)
    torch.testing.assert_close(qk, expected, atol=1e-6, rtol=1e-6)
    assert torch.equal(qkv[:, 5 * 16 :], values)  # the values beside them are not touched


def test_silu_mul(ee):
    gu = randn(3, 2 * 40)
    gate, up = gu.split(40, dim=-1)
    torch.testing.assert_close(ee.silu_mul(gu, 40), F.silu(gate) * up, atol=1e-6, rtol=1e-6)


def attention_reference(q, kcache, vcache, slot, length, scale):
    """q: (nh, hs) against the first `length` keys and values of `slot`, kv head = query head // group."""
    group = q.shape[0] // kcache.shape[1]
    keys = kcache[slot, :, :length].repeat_interleave(group, 0).double()  # (nh, len, hs)
    vals = vcache[slot, :, :length].repeat_interleave(group, 0).double()
    att = torch.softmax(torch.einsum("hd,htd->ht", q.double(), keys) * scale, -1)
    return torch.einsum("ht,htd->hd", att, vals).float()


@pytest.mark.parametrize("n_head,n_kv_head", [(4, 4), (9, 3), (8, 1)])
@pytest.mark.parametrize("threads", [1, 2])
def test_decode_attention_writes_the_new_keys_then_attends_each_sequence_alone(ee, n_head, n_kv_head, threads):
    slots, cap, hs, rows = 4, 600, 32, 6
    kcache, vcache = randn(slots, n_kv_head, cap, hs, seed=1), randn(slots, n_kv_head, cap, hs, seed=2)
    q, k, v = randn(rows, n_head, hs, seed=3), randn(rows, n_kv_head, hs, seed=4), randn(rows, n_kv_head, hs, seed=5)
    # packed rows 1, 4 and 5 decode, into slots 3, 0 and 2, at positions from the first to past the threshold
    # where the op starts using threads
    where = {"rows": [1, 4, 5], "slots": [3, 0, 2], "pos": [0, 37, 599]}
    y = torch.zeros(rows, n_head, hs)
    kc, vc = kcache.clone(), vcache.clone()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ee.decode_attention_(y, q, k, v, kc, vc, *(torch.tensor(where[n]) for n in ("rows", "slots", "pos")), 0.17)
    finally:
        torch.set_num_threads(before)
    for row, slot, pos in zip(where["rows"], where["slots"], where["pos"]):
        kcache[slot, :, pos], vcache[slot, :, pos] = k[row], v[row]
        torch.testing.assert_close(y[row], attention_reference(q[row], kcache, vcache, slot, pos + 1, 0.17))
    assert torch.equal(kc, kcache) and torch.equal(vc, vcache)  # written there, nowhere else
    assert not y[[0, 2, 3]].any()  # rows that do not decode are left alone


def test_decode_attention_refuses_what_does_not_fit(ee):
    kc = vc = torch.zeros(2, 1, 8, 16)
    q, k, v, y = torch.zeros(1, 2, 16), torch.zeros(1, 1, 16), torch.zeros(1, 1, 16), torch.zeros(1, 2, 16)
    one = torch.tensor([0])
    with pytest.raises(RuntimeError, match="out of range"):
        ee.decode_attention_(y, q, k, v, kc, vc, one, one, torch.tensor([8]), 0.25)  # past the capacity
    with pytest.raises(RuntimeError, match="out of range"):
        ee.decode_attention_(y, q, k, v, kc, vc, one, torch.tensor([2]), one, 0.25)  # no such slot
    with pytest.raises(RuntimeError, match="heads or head size"):
        ee.decode_attention_(torch.zeros(1, 3, 16), q, k, v, kc, vc, one, one, one, 0.25)  # y for 3 heads, q has 2
    with pytest.raises(RuntimeError, match="contiguous"):
        ee.decode_attention_(y, q, k, v, kc.transpose(2, 3), vc, one, one, one, 0.25)


# ---- the model's serving pass ---------------------------------------------------------------------


def on_pytorch(model: Llama) -> Llama:
    """The same model (the same linears, in place) on its PyTorch serving pass."""
    twin = copy.copy(model)  # shares the modules: the weights are the same tensors
    twin.use_kernels(None)
    return twin


def serve(model: Llama, prompts: list[torch.Tensor], steps: int, ctx: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Prefill `prompts` in one packed pass (the first prompt's last token held back so it decodes beside the
    others' prefill), then decode `steps` greedy tokens for all, their caches in one arena as the batcher
    keeps them. Returns each step's logits (n prompts, vocab)."""
    arena = KVArena(model.config)
    caches = [KVCache(model.config) for _ in prompts]
    model.forward_packed(prompts[0][:-1], [Segment(caches[0], len(prompts[0]) - 1)])
    for c in caches:
        arena.bind(c)
    feeds = [prompts[0][-1:], *prompts[1:]]
    out = []
    for _ in range(steps):
        n = sum(len(f) for f in feeds)
        rows = None if ctx is None else ctx.expand(n, -1)
        logits = model.forward_packed(torch.cat(feeds), [Segment(c, len(f)) for c, f in zip(caches, feeds)], rows)
        out.append(logits.clone())
        feeds = [row.argmax().view(1) for row in logits]
    return out


@pytest.fixture(scope="module")
def model():
    return make_model(tiny_config())


@pytest.mark.parametrize("fmt", FORMATS)
@torch.inference_mode()
def test_the_fused_serving_pass_computes_what_the_pytorch_pass_does(model, fmt):
    fused = formatted(base_model(model, fmt), fmt)
    assert fused.fused is not None
    if fmt.startswith("native-"):  # every layer runs whole in the kernels once all rows decode
        assert all(block.x8 is not None for block in fused.layers)
    V = fused.config.vocab_size
    prompts = [torch.randint(0, V, (n,), generator=torch.Generator().manual_seed(n)) for n in (9, 4, 13)]
    got, expected = serve(fused, prompts, 8), serve(on_pytorch(fused), prompts, 8)
    # float rounding only; where the kernels quantise activations to 8 bits a block, a rounding that tips one
    # activation to the next step moves the logits by up to about 1%
    tol = 1e-4 if fmt in ("fp32", "fp16") else 2e-2
    for step, (a, b) in enumerate(zip(got, expected)):
        assert (a - b).abs().max().item() <= tol * b.abs().max().item(), f"step {step}"
        assert torch.equal(a.argmax(-1), b.argmax(-1)), f"step {step}: another greedy token"


@torch.inference_mode()
def test_a_layer_with_an_emotion_adapter_keeps_it_on_the_fused_pass(model):
    adapted = formatted(model, "native-Q8_0")
    for p in ea.attach(adapted, [1]).parameters():
        torch.nn.init.normal_(p, std=0.3, generator=torch.Generator().manual_seed(7))
    V = adapted.config.vocab_size
    prompts = [torch.randint(0, V, (n,), generator=torch.Generator().manual_seed(n)) for n in (6, 10)]
    ctx = torch.linspace(-1, 1, ea.CTX_DIM)[None]
    with_ctx = serve(adapted, prompts, 5, ctx)
    for a, b in zip(with_ctx, serve(on_pytorch(adapted), prompts, 5, ctx)):
        torch.testing.assert_close(a, b, atol=1e-4 * b.abs().max().item(), rtol=0)
    base = serve(adapted, prompts, 5)
    assert not torch.allclose(with_ctx[-1], base[-1])  # the context still steers the adapted layer


@torch.inference_mode()
def test_the_fused_pass_is_batch_invariant(model):
    fused = formatted(model, "native-Q4_1")
    V = fused.config.vocab_size
    target = torch.randint(0, V, (11,), generator=torch.Generator().manual_seed(1))
    alone = serve(fused, [target], 6)
    others = [torch.randint(0, V, (n,), generator=torch.Generator().manual_seed(n)) for n in (3, 17, 5)]
    together = serve(fused, [target, *others], 6)
    for a, b in zip(alone, together):
        assert torch.equal(a[0], b[0])


def test_the_pytorch_pass_serves_where_the_kernels_are_missing_or_gradients_are_wanted(model, monkeypatch):
    from emotional_engine.lm import kernels

    monkeypatch.setattr(kernels, "ops", lambda: None)  # as when they could not be built
    plain = apply_weight_format(copy.deepcopy(model), "fp32")
    assert plain.fused is None and all(block.x8 is None for block in plain.layers)
    monkeypatch.undo()
    fused = apply_weight_format(copy.deepcopy(model), "fp32")
    assert fused.fused is not None
    prompt = torch.tensor([5, 9, 2, 7])
    with torch.inference_mode():
        expected = serve(plain, [prompt], 3)
    grads = serve(fused, [prompt], 3)  # gradients on: the fused ops, which have no backward, step aside
    for a, b in zip(grads, expected):
        assert torch.equal(a, b)
