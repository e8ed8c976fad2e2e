"""Emotion-aware attention adapter: identity at initialisation, shapes, gradient flow, and the
runtime feeding each request's context to its own rows of a packed batch."""

from __future__ import annotations

import copy

import pytest
import torch

from emotional_engine.lm import emotion_attention as ea
from emotional_engine.lm.kv_cache import KVCache, Segment
from emotional_engine.lm.sampling import SamplingParams
from tiny_lm import make_model, run_concurrently, tiny_config

pytestmark = pytest.mark.usefixtures("torch_threads")

JOY = [0.9, 0.02, 0.01, 0.02, 0.01, 0.01, 0.01, 0.01, 0.01, 0.8, 0.5]
FEAR = [0.01, 0.01, 0.9, 0.02, 0.02, 0.01, 0.01, 0.01, 0.01, -0.6, 0.7]


def _randomise(adapters, seed: int = 1, std: float = 0.5) -> None:
    """Trained-looking adapters: nonzero weights, so the context changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapters.parameters():
            p.copy_(std * torch.randn(p.shape, generator=g))


def _adapted(model, layers=(1,), seed: int | None = 1):
    m = copy.deepcopy(model)
    adapters = ea.attach(m, list(layers))
    if seed is not None:
        _randomise(adapters, seed)
    return m, adapters


def test_identity_at_initialisation(model):
    adapted, _ = _adapted(model, layers=(0, 1), seed=None)
    idx = torch.randint(0, 200, (2, 12), generator=torch.Generator().manual_seed(0))
    ctx = torch.rand(2, 12, ea.CTX_DIM)
    with torch.no_grad():
        base, _ = model(idx)
        out, _ = adapted(idx, ctx=ctx)
    assert torch.equal(out, base)


def test_shapes_and_zero_context_is_base(model):
    cfg = model.config
    a = ea.EmotionAttentionAdapter(cfg)
    _randomise(a)
    N = 5
    qk = torch.randn(N, cfg.n_head + cfg.n_kv_head, cfg.head_dim)
    ctx = torch.rand(N, ea.CTX_DIM)
    ctx[2] = 0.0
    assert a.adjust_qk(qk, ctx).shape == qk.shape
    g = a.gate(torch.randn(N, cfg.n_embd), ctx)
    assert g.shape == (N, cfg.n_head, 1)
    assert torch.equal(g[2], torch.ones(cfg.n_head, 1))  # no context: the base computation
    assert torch.equal(a.adjust_qk(qk, ctx)[2], qk[2])
    assert not torch.allclose(g[0], torch.ones(cfg.n_head, 1))


def test_context_changes_the_output_only_where_given(model):
    adapted, _ = _adapted(model, layers=(0, 1))
    idx = torch.randint(0, 200, (2, 10), generator=torch.Generator().manual_seed(0))
    ctx = torch.zeros(2, 10, ea.CTX_DIM)
    ctx[0] = torch.tensor(JOY)
    with torch.no_grad():
        base, _ = model(idx)
        out, _ = adapted(idx, ctx=ctx)
    assert not torch.allclose(out[0], base[0], atol=1e-3)
    assert torch.equal(out[1], base[1])


def test_only_adapter_parameters_get_gradients(model):
    adapted, adapters = _adapted(model, layers=(1,), seed=None)  # zero init: grads must still flow
    idx = torch.randint(0, 200, (2, 10), generator=torch.Generator().manual_seed(0))
    _, loss = adapted(idx[:, :-1], idx[:, 1:], ctx=torch.rand(2, 9, ea.CTX_DIM))
    loss.backward()
    names = {id(p) for p in adapters.parameters()}
    for name, p in adapted.named_parameters():
        if id(p) in names:
            assert p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert not p.requires_grad and p.grad is None, name
    assert adapted.layers[0].attn.adapter is None  # only the configured layer carries one


def test_packed_prefill_matches_plain_forward(model):
    adapted, _ = _adapted(model)
    ids = torch.randint(0, 200, (9,), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full, _ = adapted(ids[None], ctx=torch.tensor(JOY).expand(1, 9, ea.CTX_DIM))
        cache = KVCache(model.config)
        packed = adapted.forward_packed(ids, [Segment(cache, 9)], torch.tensor(JOY).expand(9, ea.CTX_DIM))
    torch.testing.assert_close(packed[0], full[0, -1], rtol=1e-4, atol=1e-4)


def test_batcher_feeds_each_request_its_own_context(model, make_batcher):
    adapted, _ = _adapted(model, layers=(0, 1), seed=2)

    def params(ctx):
        return SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True, emotion_context=ctx)

    jobs = [
        {"prompt": "the cat sat", "params": params(JOY)},
        {"prompt": "the cat sat", "params": params(FEAR)},
        {"prompt": "the cat sat", "params": params(None)},
        {"prompt": "hello there", "params": params(JOY)},
    ]
    eng = make_batcher(adapted, max_batch=8)
    together = run_concurrently(eng, jobs)
    alone = [eng.generate(j["prompt"], j["params"]) for j in jobs]
    assert [c.text for c in together] == [c.text for c in alone]  # batch mates never matter
    base = make_batcher(model).generate("the cat sat", params(None))
    assert together[2].text == base.text  # no context: the base model, even next to adapted rows
    assert len({together[0].text, together[1].text, together[2].text}) == 3  # each context steers


def test_emotion_context_is_validated():
    with pytest.raises(ValueError):
        SamplingParams(emotion_context=[0.0] * 5)
    with pytest.raises(ValueError):
        SamplingParams(emotion_schedule=[JOY, [0.0] * 5])
    with pytest.raises(ValueError):
        SamplingParams(emotion_context=JOY, emotion_schedule=[JOY])


class _PeriodAt:
    """Forces a full stop as the `at`-th output token (a sentence end where the test wants it)."""

    def __init__(self, tokenizer, at: int):
        (self.period,) = tokenizer.encode(".")
        self.at, self.start = at, None

    def __call__(self, ids, logits):
        self.start = len(ids) if self.start is None else self.start
        if len(ids) - self.start == self.at:
            logits = torch.full_like(logits, float("-inf"))
            logits[self.period] = 0.0
        return logits


def test_a_schedule_switches_the_context_at_the_sentence_end(model, make_batcher, tokenizer):
    adapted, _ = _adapted(model, layers=(0, 1), seed=2)
    eng = make_batcher(adapted)

    def run(**ctx):
        params = SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True, **ctx)
        return eng.generate("the cat sat", params, processors=[_PeriodAt(tokenizer, 4)]).token_ids

    scheduled, joy, fear = run(emotion_schedule=[JOY, FEAR]), run(emotion_context=JOY), run(emotion_context=FEAR)
    assert scheduled[4] == tokenizer.encode(".")[0]
    assert scheduled[:5] == joy[:5] != fear[:5]  # the first sentence, to its full stop, under JOY
    assert scheduled[5:] != joy[5:]  # the tokens after it under FEAR


def test_save_and_load_round_trip(tmp_path, model):
    adapted, adapters = _adapted(model)
    cfg = ea.AdapterConfig(layers=[1], emotion_contexts={"joy": JOY}, metrics={"ppl_adapter": 1.0})
    ea.save(tmp_path / "a.pt", adapters, cfg)
    fresh = copy.deepcopy(model)
    back = ea.load(fresh, tmp_path / "a.pt")
    assert back == cfg
    idx = torch.randint(0, 200, (1, 8), generator=torch.Generator().manual_seed(0))
    ctx = torch.tensor(FEAR).expand(1, 8, ea.CTX_DIM)
    with torch.no_grad():
        assert torch.equal(fresh(idx, ctx=ctx)[0], adapted(idx, ctx=ctx)[0])
    with pytest.raises(ValueError, match="layers"):
        ea.load(make_model(tiny_config(n_layer=1)), tmp_path / "a.pt")
    with pytest.raises(FileNotFoundError, match="train"):
        ea.load(fresh, tmp_path / "missing.pt")


def test_builtin_generator_loads_an_adapter_for_its_model_only(tmp_path, model, gguf_writer, cache_dir):
    from emotional_engine.lm.builtin import BuiltinGenerator
    from emotional_engine.lm.gguf import load_gguf

    path = gguf_writer(model)
    sha = load_gguf(path)[0].sha256
    _, adapters = _adapted(model)
    ea.save(
        tmp_path / "mine.pt", adapters, ea.AdapterConfig(layers=[1], emotion_contexts={"joy": JOY}, base_sha256=sha)
    )
    ea.save(tmp_path / "other.pt", adapters, ea.AdapterConfig(layers=[1], base_sha256="0" * 64))

    gen = BuiltinGenerator.load(path, weight_format="fp32", emotion_adapter=tmp_path / "mine.pt")
    try:
        assert gen.info.adapter.startswith("emotion-attention@")
        assert gen.emotion_context("joy") == JOY and gen.emotion_context("fear") is None
        assert gen.batcher.has_adapter
    finally:
        gen.batcher.close()
    off = BuiltinGenerator.load(path, weight_format="fp32", emotion_adapter=False)
    try:
        assert off.info.adapter is None and not off.batcher.has_adapter and off.emotion_context("joy") is None
    finally:
        off.batcher.close()
    with pytest.raises(ValueError, match="another model"):
        BuiltinGenerator.load(path, weight_format="fp32", emotion_adapter=tmp_path / "other.pt")
