"""Sampler and SamplingParams, on hand-made logits."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from pydantic import ValidationError

from emotional_engine.lm.sampling import Sampler, SamplingParams

pytestmark = pytest.mark.usefixtures("torch_threads")

V = 50


def random_logits(seed: int, n: int = V, scale: float = 3.0) -> torch.Tensor:
    return scale * torch.randn(n, generator=torch.Generator().manual_seed(seed))


def draws(params: SamplingParams, logits: torch.Tensor, n: int, prompt=(), processors=()) -> list[int]:
    """n independent first-token draws with seeds 0..n-1 (fresh sampler each: no penalties carry)."""
    out = []
    for seed in range(n):
        s = Sampler(params.model_copy(update={"seed": seed}), processors)
        out.append(s(logits, list(prompt), []))
    return out


def test_greedy_at_temperature_zero():
    for seed in range(20):
        logits = random_logits(seed)
        s = Sampler(SamplingParams(temperature=0.0))
        assert s(logits, [1, 2], []) == int(logits.argmax())


def test_greedy_ignores_the_seed_and_other_knobs():
    logits = random_logits(1)
    p = SamplingParams(temperature=0.0, top_k=5, top_p=0.5, min_p=0.2)
    assert set(draws(p, logits, 30)) == {int(logits.argmax())}


def test_temperature_sampling_is_seeded_and_varied():
    logits = random_logits(2, scale=1.0)
    p = SamplingParams(temperature=1.0)
    a = draws(p, logits, 40)
    assert a == draws(p, logits, 40)  # same seeds -> same draws
    assert len(set(a)) > 5  # a flat-ish distribution really is sampled
    # one sampler draws a reproducible sequence from its own generator
    s1, s2 = Sampler(p.model_copy(update={"seed": 7})), Sampler(p.model_copy(update={"seed": 7}))
    seq1 = [s1(logits, [], []) for _ in range(20)]
    seq2 = [s2(logits, [], []) for _ in range(20)]
    assert seq1 == seq2


def test_sampling_follows_the_distribution():
    logits = torch.log(torch.tensor([0.7, 0.2, 0.1]))
    c = Counter(draws(SamplingParams(temperature=1.0), logits, 2000))
    assert abs(c[0] / 2000 - 0.7) < 0.05 and abs(c[1] / 2000 - 0.2) < 0.05 and abs(c[2] / 2000 - 0.1) < 0.04


def test_top_k_one_equals_greedy():
    for seed in range(10):
        logits = random_logits(seed, scale=0.5)  # flat: sampling without top_k would vary
        assert set(draws(SamplingParams(temperature=1.5, top_k=1), logits, 20)) == {int(logits.argmax())}


def test_top_k_keeps_the_k_best():
    logits = random_logits(3, scale=0.3)
    best = set(torch.topk(logits, 4).indices.tolist())
    got = set(draws(SamplingParams(temperature=1.0, top_k=4), logits, 300))
    assert got == best


def test_tiny_top_p_equals_greedy():
    for seed in range(10):
        logits = random_logits(seed, scale=0.5)
        assert set(draws(SamplingParams(temperature=1.0, top_p=1e-6), logits, 20)) == {int(logits.argmax())}


def test_top_p_keeps_the_smallest_prefix_reaching_p():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    assert set(draws(SamplingParams(temperature=1.0, top_p=0.6), logits, 300)) == {0, 1}
    assert set(draws(SamplingParams(temperature=1.0, top_p=0.5), logits, 100)) == {0}
    assert set(draws(SamplingParams(temperature=1.0, top_p=0.9), logits, 600)) == {0, 1, 2}


def test_min_p_drops_unlikely_tokens():
    probs = torch.tensor([0.40, 0.25, 0.19, 0.10, 0.06])
    logits = torch.log(probs)
    # min_p 0.5: keep tokens with p >= 0.2 -> {0, 1}
    assert set(draws(SamplingParams(temperature=1.0, min_p=0.5), logits, 300)) == {0, 1}
    # min_p 0.2: p >= 0.08 -> {0, 1, 2, 3}
    assert set(draws(SamplingParams(temperature=1.0, min_p=0.2), logits, 800)) == {0, 1, 2, 3}


def test_repetition_penalty_lowers_seen_tokens():
    # positive logit divided, negative logit multiplied: both move down
    pos = torch.tensor([2.0, 1.5, 0.0, -5.0])
    s = Sampler(SamplingParams(temperature=0.0, repetition_penalty=2.0))
    assert s(pos, [0], []) == 1  # 2.0 / 2 = 1.0 < 1.5
    neg = torch.tensor([-1.0, -1.5, -3.0])
    s = Sampler(SamplingParams(temperature=0.0, repetition_penalty=2.0))
    assert s(neg, [0], []) == 1  # -1.0 * 2 = -2.0 < -1.5
    # output tokens count too
    s = Sampler(SamplingParams(temperature=0.0, repetition_penalty=2.0))
    assert s(pos, [], [0]) == 1
    # unseen tokens are untouched, and no penalty without history
    s = Sampler(SamplingParams(temperature=0.0, repetition_penalty=2.0))
    assert s(pos, [3], []) == 0
    # a penalty below 1 raises seen tokens instead
    s = Sampler(SamplingParams(temperature=0.0, repetition_penalty=0.5))
    assert s(torch.tensor([1.0, 1.9]), [0], []) == 0  # 1.0 / 0.5 = 2.0 > 1.9


def test_repetition_penalty_shifts_the_distribution():
    logits = torch.tensor([1.0, 0.0, 0.0, 0.0])
    plain = Counter(draws(SamplingParams(temperature=1.0), logits, 1000))
    pen = Counter(draws(SamplingParams(temperature=1.0, repetition_penalty=4.0), logits, 1000, prompt=[0]))
    e = torch.e
    assert abs(plain[0] / 1000 - e / (e + 3)) < 0.05  # 0.475
    assert abs(pen[0] / 1000 - e**0.25 / (e**0.25 + 3)) < 0.05  # logit 1.0 / 4 -> 0.30


def test_presence_penalty_applies_to_generated_tokens_only():
    logits = torch.tensor([2.0, 1.5, 0.0])
    s = Sampler(SamplingParams(temperature=0.0, presence_penalty=1.0))
    assert s(logits, [0, 0, 0], []) == 0  # the prompt does not count
    assert s(logits, [], [0]) == 1  # 2.0 - 1.0 < 1.5 once token 0 was generated
    # presence is flat: a second occurrence costs nothing more
    s = Sampler(SamplingParams(temperature=0.0, presence_penalty=0.4))
    toks = [s(torch.tensor([2.0, 1.0]), [], []) for _ in range(3)]
    assert toks == [0, 0, 0]  # 2.0 - 0.4 > 1.0 however often 0 was produced


def test_frequency_penalty_grows_with_count():
    s = Sampler(SamplingParams(temperature=0.0, frequency_penalty=0.4))
    toks = [s(torch.tensor([2.0, 1.0]), [], []) for _ in range(4)]
    # 2.0, 1.6, 1.2 > 1.0, then 0.8 < 1.0
    assert toks == [0, 0, 0, 1]


def test_negative_presence_penalty_encourages_repeats():
    s = Sampler(SamplingParams(temperature=0.0, presence_penalty=-1.0))
    assert s(torch.tensor([1.0, 1.5]), [], []) == 1
    assert s(torch.tensor([1.6, 1.5]), [], []) == 1  # 1.5 + 1.0 beats 1.6


def test_processors_run_before_sampling_and_see_all_ids():
    seen = []

    def proc(ids, logits):
        seen.append(list(ids))
        out = torch.full_like(logits, float("-inf"))
        out[7] = 0.0
        return out

    s = Sampler(SamplingParams(temperature=1.3, top_p=0.9, seed=0), [proc])
    logits = random_logits(4)
    assert s(logits, [1, 2], [3]) == 7
    assert seen == [[1, 2, 3]]


@pytest.mark.parametrize(
    "kw",
    [
        {"temperature": -0.1},
        {"temperature": 11.0},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"top_k": -1},
        {"min_p": 1.0},
        {"min_p": -0.1},
        {"max_tokens": 0},
        {"repetition_penalty": 0.0},
        {"presence_penalty": 3.0},
        {"frequency_penalty": -2.5},
        {"stop": [""]},
        {"stop": ["ok", ""]},
        {"stop": ["x"] * 17},
    ],
)
def test_sampling_params_rejects_bad_values(kw):
    with pytest.raises(ValidationError):
        SamplingParams(**kw)


def test_sampling_params_defaults_are_valid():
    p = SamplingParams()
    assert p.temperature > 0 and p.top_p == 1.0 and p.stop == [] and p.max_tokens >= 1
    assert SamplingParams(temperature=0, top_p=1.0, stop=["\n\n"], seed=3).stop == ["\n\n"]


def test_logprob_is_of_the_drawn_token_under_the_distribution_drawn_from():
    logits = random_logits(4)
    s = Sampler(SamplingParams(temperature=0.0))
    tok = s(logits, [], [])
    assert s.logprob == pytest.approx(float(torch.log_softmax(logits, -1)[tok]), abs=1e-5)  # greedy: the full softmax
    s = Sampler(SamplingParams(temperature=0.5, seed=3))
    tok = s(logits, [], [])
    assert s.logprob == pytest.approx(float(torch.log_softmax(logits / 0.5, -1)[tok]), abs=1e-5)
    s = Sampler(SamplingParams(temperature=1.0, top_k=5, seed=3))  # truncated: renormalised over the five kept
    tok = s(logits, [], [])
    top = torch.topk(logits, 5)
    assert tok in top.indices.tolist()
    kept = torch.log_softmax(top.values, -1)[top.indices.tolist().index(tok)]
    assert s.logprob == pytest.approx(float(kept), abs=1e-5)
    s = Sampler(SamplingParams(temperature=1.0, top_p=0.5, seed=1))
    tok = s(logits, [], [])
    assert s.logprob <= 0.0 and s.logprob >= float(torch.log_softmax(logits, -1)[tok]) - 1e-6  # never below untruncated


def nucleus(probs: torch.Tensor, top_p: float) -> dict[int, float]:
    """The top-p distribution computed the slow, obvious way."""
    order = sorted(range(len(probs)), key=lambda i: -float(probs[i]))
    kept, mass = [], 0.0
    for i in order:
        if mass >= top_p:
            break
        kept.append(i)
        mass += float(probs[i])
    return {i: float(probs[i]) / mass for i in kept}


@pytest.mark.parametrize(("peak", "inside"), [(12.0, True), (0.0, False)])
def test_top_p_over_a_large_vocabulary_draws_the_nucleus_distribution(peak, inside):
    """The cut is looked for among the most likely tokens first (a peaked distribution: a handful of
    tokens) and over the sorted vocabulary when it reaches past them (a flat one): the same draws'
    distribution either way."""
    from emotional_engine.lm.sampling import TOP_CANDIDATES

    logits = random_logits(5, n=5000, scale=1.0)
    logits[:6] += peak
    want = nucleus(torch.softmax(logits, -1), 0.8)
    assert (len(want) < TOP_CANDIDATES) == inside
    got = Counter(draws(SamplingParams(temperature=1.0, top_p=0.8), logits, 3000))
    assert set(got) <= set(want)
    for i, p in want.items():
        if p > 0.05:
            assert abs(got[i] / 3000 - p) < 0.03, (i, got[i] / 3000, p)


def test_the_repetition_penalty_follows_the_output_step_by_step():
    logits = torch.tensor([3.0, 2.9, 2.8, -1.0])
    s = Sampler(SamplingParams(temperature=0.0, repetition_penalty=1.5))
    prompt, out = [3], []
    for _ in range(3):
        out.append(s(logits, prompt, out))
    assert out == [0, 1, 2]  # each token, once written, falls below the next
    assert s(logits, [], [0, 1]) == 2  # a new request's ids (shorter output): the seen set starts again
