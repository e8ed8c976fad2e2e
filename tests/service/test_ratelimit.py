"""The rate limiter on its own, with a settable clock: reservations and their settlement."""

from __future__ import annotations

import pytest

from emotional_engine.service.errors import ApiError
from emotional_engine.service.ratelimit import RateLimiter


class Clock:
    def __init__(self, t: float = 600.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


async def test_a_reservation_holds_tokens_and_is_settled_within_its_minute_only():
    clock = Clock()
    limiter = RateLimiter(100, 1000, clock=clock)
    r = await limiter.reserve("k", 800)
    with pytest.raises(ApiError) as e:
        await limiter.reserve("k", 300)  # 800 held: 300 more do not fit
    assert e.value.status == 429 and "tokens" in e.value.message
    await limiter.settle(r, 200)  # used 200: 600 given back
    second = await limiter.reserve("k", 700)
    clock.t += 60  # the next minute
    await limiter.settle(second, 100)  # no refund into a minute it was not counted in
    assert (await limiter._add("k", "tokens", 0))[0] == 0
    big = await limiter.reserve("k", 5000)  # more than a minute's budget: held as the whole budget
    assert big.tokens == 1000
    await limiter.settle(big, 1500)  # used more than held: the rest is charged
    assert (await limiter._add("k", "tokens", 0))[0] == 1500
