"""ContinuousBatcher on a tiny random-weight model: determinism, stopping, kept caches, isolation, batch invariance."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time

import pytest
import torch

from emotional_engine.lm.batcher import ContextOverflowError, ContinuousBatcher
from emotional_engine.lm.generator import Completion
from emotional_engine.lm.sampling import SamplingParams
from tiny_lm import FORMATS, base_model, formatted, run_concurrently

pytestmark = pytest.mark.usefixtures("torch_threads")

GREEDY = SamplingParams(temperature=0.0, max_tokens=16, ignore_eos=True)
PROMPTS = ["hello", "the cat sat on the mat", "x", "naïve café 😀 and more text to prefill here", "abc def ghi"]


def wait_until(cond, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.005)
    return cond()


class Script:
    """A logits processor that forces `ids` as the first generated tokens, then lets the model go."""

    def __init__(self, ids: list[int]):
        self.ids = list(ids)
        self.calls = 0

    def __call__(self, ids, logits):
        i = self.calls
        self.calls += 1
        if i >= len(self.ids):
            return logits
        out = torch.full_like(logits, float("-inf"))
        out[self.ids[i]] = 0.0
        return out


def generate_with_pieces(batcher: ContinuousBatcher, prompt, params, **kw) -> tuple[Completion, list[str]]:
    pieces: list[str] = []
    c = batcher.generate(prompt, params, on_piece=lambda p: pieces.append(p.text), **kw)
    return c, pieces


# ---- determinism ------------------------------------------------------------------------------


def test_greedy_is_deterministic_and_prompt_dependent(batcher):
    a = batcher.generate("hello", GREEDY)
    assert a.finish_reason == "length" and a.completion_tokens == 16 and a.error is None
    assert batcher.generate("hello", GREEDY).text == a.text
    assert batcher.generate("goodbye", GREEDY).text != a.text


def test_seed_controls_sampling(batcher):
    p = SamplingParams(temperature=1.0, max_tokens=24, ignore_eos=True, seed=1234)
    a = batcher.generate("once upon a time", p)
    b = batcher.generate("once upon a time", p)
    assert a.text == b.text
    others = {batcher.generate("once upon a time", p.model_copy(update={"seed": s})).text for s in range(4)}
    assert len(others | {a.text}) >= 3  # different seeds give different text


def test_usage_counts(batcher, tokenizer):
    prompt = "the cat sat"
    c = batcher.generate(prompt, SamplingParams(temperature=0.0, max_tokens=5, ignore_eos=True))
    assert c.prompt_tokens == len(tokenizer.encode(prompt))
    assert c.cached_tokens == 0
    assert c.total_ms >= c.ttft_ms > 0


def test_chat_messages_and_token_ids_are_accepted(batcher, tokenizer):
    msgs = [{"role": "user", "content": "hi"}]
    ids = tokenizer.encode(tokenizer.apply_chat_template(msgs))
    a = batcher.generate(msgs, GREEDY)
    b = batcher.generate(ids, GREEDY)
    assert a.text == b.text and a.prompt_tokens == len(ids)


def test_empty_prompt_is_rejected(batcher):
    with pytest.raises(ValueError):
        batcher.generate("", GREEDY)


# ---- stopping ----------------------------------------------------------------------------------


@pytest.mark.parametrize("max_tokens", [1, 7, 30])
def test_max_tokens(batcher, max_tokens):
    c = batcher.generate("hello", SamplingParams(temperature=0.7, seed=0, max_tokens=max_tokens, ignore_eos=True))
    assert c.finish_reason == "length"
    assert c.completion_tokens == max_tokens


def test_stop_string_cuts_and_is_never_streamed(batcher, tokenizer):
    script = tokenizer.encode("Hello world END more text")
    c, pieces = generate_with_pieces(
        batcher, "hi", SamplingParams(temperature=0.0, max_tokens=40, stop=["END"]), processors=[Script(script)]
    )
    assert c.finish_reason == "stop"
    assert c.text == "Hello world "
    assert "".join(pieces) == "Hello world "
    assert not any(ch in p for p in pieces for ch in "END")
    assert c.completion_tokens <= len(tokenizer.encode("Hello world END"))


def test_stop_prefix_that_does_not_complete_is_released(batcher, tokenizer):
    script = tokenizer.encode("a wxq b wxyz tail")
    c, pieces = generate_with_pieces(
        batcher, "hi", SamplingParams(temperature=0.0, max_tokens=40, stop=["wxyz"]), processors=[Script(script)]
    )
    assert (c.text, c.finish_reason) == ("a wxq b ", "stop")
    assert "".join(pieces) == "a wxq b "


def test_stop_inside_a_token_and_earliest_stop_wins(batcher, tokenizer):
    script = tokenizer.encode("say the other one")  # "the" is a single token: stop "he" cuts inside it
    assert any(tokenizer.token_text(i) == "Ġthe" for i in script)
    c = batcher.generate(
        "hi", SamplingParams(temperature=0.0, max_tokens=40, stop=["one", "he"]), processors=[Script(script)]
    )
    assert (c.text, c.finish_reason) == ("say t", "stop")


def test_stop_string_at_the_start_gives_empty_text(batcher, tokenizer):
    c = batcher.generate(
        "hi", SamplingParams(temperature=0.0, max_tokens=10, stop=["ab"]), processors=[Script(tokenizer.encode("abc"))]
    )
    assert (c.text, c.finish_reason) == ("", "stop")


def test_max_tokens_releases_held_stop_prefix(batcher, tokenizer):
    script = tokenizer.encode("ok EN")
    c = batcher.generate(
        "hi", SamplingParams(temperature=0.0, max_tokens=len(script), stop=["END"]), processors=[Script(script)]
    )
    assert (c.text, c.finish_reason) == ("ok EN", "length")


def test_eos_stops(batcher, tokenizer):
    eos = next(iter(tokenizer.eos_ids))
    script = tokenizer.encode("ab") + [eos]
    c = batcher.generate("hi", SamplingParams(temperature=0.0, max_tokens=20), processors=[Script(script)])
    assert (c.text, c.finish_reason, c.completion_tokens) == ("ab", "stop", len(script))
    # with ignore_eos the eos token is generated (and not shown) and generation goes on
    c = batcher.generate(
        "hi", SamplingParams(temperature=0.0, max_tokens=20, ignore_eos=True), processors=[Script(script)]
    )
    assert (c.finish_reason, c.completion_tokens) == ("length", 20)
    assert c.text.startswith("ab")


def test_forced_token_is_obeyed_when_sampling(batcher, tokenizer):
    x = tokenizer.encode("x")[0]

    def force_x(ids, logits):
        out = torch.full_like(logits, float("-inf"))
        out[x] = logits[x]
        return out

    p = SamplingParams(
        temperature=1.5,
        top_k=5,
        top_p=0.9,
        repetition_penalty=1.3,
        presence_penalty=0.5,
        max_tokens=12,
        ignore_eos=True,
        seed=3,
    )
    c = batcher.generate("some prompt", p, processors=[force_x])
    assert c.text == "x" * 12


# ---- kept caches and the cache pool ------------------------------------------------------------


def test_a_kept_cache_reuses_the_prefix(batcher, tokenizer):
    prompt = tokenizer.encode("the story so far: a cat, a hat, a bat.")
    out = tokenizer.encode(" and then")
    first = batcher.generate(
        prompt, SamplingParams(temperature=0.0, max_tokens=len(out)), kv_key="s1", processors=[Script(out)]
    )
    assert first.cached_tokens == 0 and first.completion_tokens == len(out)
    turn2 = prompt + out + tokenizer.encode(" the end came")
    second = batcher.generate(turn2, GREEDY, kv_key="s1")
    # the cache holds the prompt and every generated token but the last (it was never fed back)
    assert second.cached_tokens == len(prompt) + len(out) - 1
    fresh = batcher.generate(turn2, GREEDY)
    assert fresh.cached_tokens == 0
    assert second.text == fresh.text
    # a third turn that diverges early reuses only the common prefix
    turn3 = prompt[:5] + tokenizer.encode("XYZ")
    third = batcher.generate(turn3, GREEDY, kv_key="s1")
    assert third.cached_tokens == 5
    assert third.text == batcher.generate(turn3, GREEDY).text


def test_same_prompt_again_under_one_key_keeps_one_token_to_feed(batcher, tokenizer):
    prompt = tokenizer.encode("repeat me")
    a = batcher.generate(prompt, GREEDY, kv_key="s")
    b = batcher.generate(prompt, GREEDY, kv_key="s")
    assert b.cached_tokens == len(prompt) - 1
    assert a.text == b.text


def test_concurrent_requests_with_one_cache_key(batcher, tokenizer):
    prompt = tokenizer.encode("shared session prompt")
    alone = batcher.generate(prompt, GREEDY).text
    res = run_concurrently(batcher, [{"prompt": prompt, "params": GREEDY, "kv_key": "dup"}] * 3)
    assert [r.text for r in res] == [alone] * 3
    assert all(r.finish_reason == "length" for r in res)


def test_concurrent_requests_on_a_kept_cache_all_start_from_it(batcher, tokenizer):
    """A beat's candidates share the session's key: the first takes the kept cache and prefills the new
    turn, the others start from a copy of it once it has, so the turn is prefilled once; each still
    writes what it would write alone."""
    history = tokenizer.encode("a long session: the keeper, the letter, the brother, the sea.")
    batcher.generate(history, GREEDY, kv_key="beat")
    turn = history + tokenizer.encode(" next")
    seeded = [SamplingParams(temperature=0.9, max_tokens=6, ignore_eos=True, seed=s) for s in (1, 2, 3)]
    res = run_concurrently(batcher, [{"prompt": turn, "params": p, "kv_key": "beat"} for p in seeded])
    assert res[0].cached_tokens >= len(history) - 1  # all of the history
    assert [r.cached_tokens for r in res[1:]] == [len(turn) - 1] * 2  # all of the turn but the token to feed
    assert [r.text for r in res] == [batcher.generate(turn, p).text for p in seeded]


def test_the_key_keeps_the_cache_of_the_candidate_that_went_on(batcher, tokenizer):
    """Two candidates of a beat under the session's key; the caller turns the first down (cancels it)
    and goes on with the second: the next turn, which replays the second's text, finds it cached."""
    history = tokenizer.encode("the keeper climbed the stairs and read the letter twice.")
    turned_down, gone_on = queue.Queue(), queue.Queue()
    sample = [SamplingParams(temperature=1.0, max_tokens=12, ignore_eos=True, seed=s) for s in (5, 6)]
    first = batcher.submit(history, sample[0], turned_down.put, kv_key="beat")
    second = batcher.submit(history, sample[1], gone_on.put, kv_key="beat")
    turned_down.get(timeout=30)  # both run: cancel the first mid-way
    first.cancelled = True
    pieces = [gone_on.get(timeout=30)]
    while pieces[-1].finish_reason is None:
        pieces.append(gone_on.get(timeout=30))
    while turned_down.get(timeout=30).finish_reason is None:
        pass
    written = second.out_ids
    next_turn = history + written + tokenizer.encode(" then")
    assert batcher.generate(next_turn, GREEDY, kv_key="beat").cached_tokens == len(history) + len(written) - 1


def test_a_dropped_cache_is_not_reused(batcher, tokenizer):
    prompt = tokenizer.encode("drop me")
    batcher.generate(prompt, GREEDY, kv_key="d")
    assert wait_until(lambda: "d" in batcher.pool)
    batcher.drop_cache("d")
    assert "d" not in batcher.pool
    assert batcher.generate(prompt, GREEDY, kv_key="d").cached_tokens == 0


def test_tiny_budget_evicts_and_reprefill_matches(make_batcher, tokenizer):
    batcher = make_batcher(cache_budget_bytes=1)
    prompt = tokenizer.encode("a prompt long enough to matter")
    first = batcher.generate(prompt, GREEDY, kv_key="a")
    assert wait_until(lambda: batcher.pool.evictions > 0)
    assert "a" not in batcher.pool and batcher.pool.idle_bytes == 0
    again = batcher.generate(prompt, GREEDY, kv_key="a")
    assert again.cached_tokens == 0
    assert again.text == first.text


def test_budget_for_one_cache_evicts_least_recently_used(make_batcher, tokenizer):
    probe = make_batcher()
    pa, pb = tokenizer.encode("session a says hi"), tokenizer.encode("session b says hello")
    probe.generate(pa, GREEDY, kv_key="a")
    assert wait_until(lambda: probe.pool.idle_bytes > 0)
    one = probe.pool.idle_bytes
    batcher = make_batcher(cache_budget_bytes=int(one * 1.5))
    ta = batcher.generate(pa, GREEDY, kv_key="a")
    assert wait_until(lambda: "a" in batcher.pool) and batcher.pool.evictions == 0
    batcher.generate(pb, GREEDY, kv_key="b")
    assert wait_until(lambda: batcher.pool.evictions == 1)
    assert "a" not in batcher.pool and "b" in batcher.pool
    again = batcher.generate(pa, GREEDY, kv_key="a")
    assert again.cached_tokens == 0 and again.text == ta.text
    assert wait_until(lambda: batcher.pool.evictions == 2)
    assert "a" in batcher.pool and "b" not in batcher.pool
    assert batcher.pool.idle_bytes <= batcher.pool.budget


# ---- context overflow ---------------------------------------------------------------------------


def test_long_prompt_is_cut_from_the_left(batcher, model, caplog):
    ctx = model.config.context_length
    ids = [int(i) for i in torch.randint(0, 256, (ctx + 30,), generator=torch.Generator().manual_seed(0))]
    p = SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True)
    with caplog.at_level(logging.WARNING, logger="emotional_engine.lm.batcher"):
        c = batcher.generate(ids, p)
    assert any("cut from the left" in r.getMessage() for r in caplog.records)
    room = ctx - 8
    assert c.prompt_tokens == room
    assert (c.finish_reason, c.completion_tokens) == ("length", 8)
    assert c.text == batcher.generate(ids[-room:], p).text


def test_overflow_error_mode_raises(make_batcher, model):
    batcher = make_batcher(overflow="error")
    ids = list(range(model.config.context_length + 1))
    with pytest.raises(ContextOverflowError, match="context"):
        batcher.generate(ids, SamplingParams(max_tokens=8))
    # a prompt that fits still runs
    assert (
        batcher.generate(ids[:20], SamplingParams(max_tokens=3, temperature=0.0, ignore_eos=True)).completion_tokens
        == 3
    )


def test_generation_stops_at_the_context_end(batcher, model):
    ctx = model.config.context_length
    p = SamplingParams(temperature=0.0, max_tokens=1000, ignore_eos=True)
    ids = list(range(10, 10 + ctx))  # gets cut to ctx // 2 tokens: max_tokens > ctx // 2
    c = batcher.generate(ids, p)
    assert c.prompt_tokens == ctx // 2
    assert c.finish_reason == "length"
    assert c.completion_tokens < 1000
    assert c.prompt_tokens + c.completion_tokens <= ctx + 1  # the last token is sampled, never fed


def test_invalid_overflow_mode(model, tokenizer):
    with pytest.raises(ValueError):
        ContinuousBatcher(model, tokenizer, overflow="wrap")


# ---- isolation ---------------------------------------------------------------------------------


def test_failing_processor_fails_only_its_request(batcher):
    alone = [batcher.generate(p, GREEDY).text for p in PROMPTS[:3]]

    def boom_later():
        n = [0]

        def proc(ids, logits):
            n[0] += 1
            if n[0] == 4:
                raise RuntimeError("boom from the processor")
            return logits

        return proc

    jobs = [
        {"prompt": PROMPTS[0], "params": GREEDY},
        {"prompt": "bad one", "params": GREEDY, "processors": [boom_later()]},
        {"prompt": PROMPTS[1], "params": GREEDY},
        {"prompt": "worse one", "params": GREEDY, "processors": [lambda ids, logits: 1 / 0]},
        {"prompt": PROMPTS[2], "params": GREEDY},
    ]
    res = run_concurrently(batcher, jobs)
    assert [res[i].text for i in (0, 2, 4)] == alone
    assert all(res[i].finish_reason == "length" for i in (0, 2, 4))
    assert res[1].finish_reason == "error" and "boom from the processor" in res[1].error
    assert res[1].completion_tokens == 3
    assert res[3].finish_reason == "error" and "ZeroDivisionError" in res[3].error
    # the batcher still serves
    assert batcher.generate(PROMPTS[0], GREEDY).text == alone[0]


def test_bad_token_id_fails_only_its_request(batcher, model):
    alone = [batcher.generate(p, GREEDY).text for p in PROMPTS[:2]]
    jobs = [
        {"prompt": PROMPTS[0], "params": GREEDY},
        {"prompt": [1, 2, model.config.vocab_size + 5], "params": GREEDY},
        {"prompt": PROMPTS[1], "params": GREEDY},
    ]
    res = run_concurrently(batcher, jobs)
    assert res[1].finish_reason == "error" and res[1].error
    assert [res[0].text, res[2].text] == alone
    assert batcher.generate(PROMPTS[1], GREEDY).text == alone[1]


async def test_cancelling_a_stream_leaves_the_engine_serving(batcher):
    calls = []

    def slow(ids, logits):
        calls.append(1)
        time.sleep(0.003)
        return logits

    long = SamplingParams(temperature=0.0, max_tokens=60, ignore_eos=True)
    n = 0
    async for _ in batcher.stream("cancel me", long, processors=[slow]):
        n += 1
        break
    assert n == 1
    # the abandoned generator is closed by the loop; the request is cancelled and stops early
    seen = -1
    for _ in range(100):  # wait until the processor is no longer being called
        await asyncio.sleep(0.02)
        if len(calls) == seen:
            break
        seen = len(calls)
    assert len(calls) < 60
    # other requests are served normally
    pieces = [p async for p in batcher.stream(PROMPTS[1], GREEDY)]
    assert pieces[-1].finish_reason == "length"
    assert "".join(p.text for p in pieces) == batcher.generate(PROMPTS[1], GREEDY).text


async def test_stream_reports_usage_and_matches_generate(batcher):
    pieces = [p async for p in batcher.stream(PROMPTS[0], GREEDY)]
    assert all(p.finish_reason is None for p in pieces[:-1])
    last = pieces[-1]
    assert last.finish_reason == "length" and last.usage["completion_tokens"] == 16
    assert "".join(p.text for p in pieces) == batcher.generate(PROMPTS[0], GREEDY).text


def test_close_cancels_and_rejects_new_requests(make_batcher):
    batcher = make_batcher()
    assert batcher.generate("warm up", SamplingParams(max_tokens=2, temperature=0.0)).completion_tokens >= 1
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.generate("after close", GREEDY)


# ---- batch invariance through the batcher ------------------------------------------------------


@pytest.fixture(scope="module", params=FORMATS)
def fmt_model(request, model):
    return formatted(base_model(model, request.param), request.param)


class Recorder:
    """A pass-through logits processor that keeps every logits row it is given."""

    def __init__(self):
        self.rows: list[torch.Tensor] = []

    def __call__(self, ids, logits):
        self.rows.append(logits.clone())
        return logits


def assert_same_logits(a: Recorder, b: Recorder, what: str):
    assert len(a.rows) == len(b.rows), what
    for step, (x, y) in enumerate(zip(a.rows, b.rows)):
        assert torch.equal(x, y), f"{what}: step {step} differs by {(x - y).abs().max().item()}"


@pytest.mark.parametrize("sampling", ["greedy", "seeded"])
def test_alone_equals_batched(make_batcher, fmt_model, sampling):
    batcher = make_batcher(fmt_model, prefill_chunk=8)  # long prompts prefill over several steps
    if sampling == "greedy":
        params = [GREEDY] * len(PROMPTS)
    else:
        params = [
            SamplingParams(temperature=0.9, top_p=0.95, max_tokens=16, ignore_eos=True, seed=100 + i)
            for i in range(len(PROMPTS))
        ]
    rec_alone = [Recorder() for _ in PROMPTS]
    alone = [batcher.generate(p, sp, processors=[r]) for p, sp, r in zip(PROMPTS, params, rec_alone)]
    assert len({c.text for c in alone}) == len(PROMPTS)
    steps_alone = batcher.steps

    # all submitted at once: one packed batch mixing prefill chunks and decode steps
    rec = [Recorder() for _ in PROMPTS]
    batched = run_concurrently(
        batcher, [{"prompt": p, "params": sp, "processors": [r]} for p, sp, r in zip(PROMPTS, params, rec)]
    )
    assert [c.text for c in batched] == [c.text for c in alone]
    assert batcher.steps - steps_alone < steps_alone / 2  # the requests really shared forward passes
    for i in range(len(PROMPTS)):  # the logits themselves are bitwise equal, not merely the argmax
        assert_same_logits(rec_alone[i], rec[i], f"{fmt_model.weight_format} prompt {i}")

    # from several threads, staggered, so requests join and leave a running batch
    results: dict[int, str] = {}
    rec = [Recorder() for _ in PROMPTS]
    barrier = threading.Barrier(len(PROMPTS))

    def worker(i):
        barrier.wait()
        time.sleep(0.002 * i)
        results[i] = batcher.generate(PROMPTS[i], params[i], processors=[rec[i]]).text

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(PROMPTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [results[i] for i in range(len(PROMPTS))] == [c.text for c in alone]
    for i in range(len(PROMPTS)):
        assert_same_logits(rec_alone[i], rec[i], f"{fmt_model.weight_format} prompt {i} (threads)")


def test_prefill_chunk_size_does_not_change_greedy_text(make_batcher, model):
    small, big = make_batcher(prefill_chunk=3), make_batcher(prefill_chunk=256)
    for p in PROMPTS:
        assert small.generate(p, GREEDY).text == big.generate(p, GREEDY).text


def test_arena_grown_during_a_step_serves_the_next_request(make_batcher, tokenizer):
    # a prompt longer than the arena's first capacity makes it grow inside a step; the next
    # request must still be admitted (regression: the grown arena was an inference tensor
    # written outside inference mode, which killed the scheduler)
    eng = make_batcher(prefill_chunk=16)
    eng.arena.GROW = 8
    long = eng.generate(list(range(1, 60)), GREEDY.model_copy(update={"max_tokens": 4}))
    assert long.finish_reason == "length"
    assert eng.arena.k.numel() == 0  # released once idle
    again = eng.generate("the end", GREEDY.model_copy(update={"max_tokens": 4}))
    assert again.finish_reason == "length" and again.completion_tokens == 4


def test_a_background_request_steps_now_and_then_beside_others_and_writes_the_same(batcher):
    from emotional_engine.lm.batcher import BACKGROUND_EVERY

    fg = SamplingParams(temperature=0.0, max_tokens=40, ignore_eos=True)
    bg = fg.model_copy(update={"background": True})
    finished, seen, requests = threading.Event(), {}, {}

    def on_foreground(piece):
        if piece.finish_reason:
            seen["background tokens"] = len(requests["background"].out_ids)

    # the foreground request first: the background one never has the runtime to itself before it
    requests["foreground"] = batcher.submit(batcher.encode_prompt("hello"), fg, on_foreground)
    requests["background"] = batcher.submit(
        batcher.encode_prompt("abc def ghi"), bg, lambda p: p.finish_reason and finished.set()
    )
    assert finished.wait(30)
    # while the foreground request ran (40 steps, and its prefill), the background one got about one step in
    # BACKGROUND_EVERY: not starved, not keeping pace
    assert 1 <= seen["background tokens"] <= 40 // BACKGROUND_EVERY + 2
    alone = batcher.generate("abc def ghi", fg)
    assert requests["background"].out_ids == alone.token_ids  # what it writes does not depend on when it stepped
