"""The rate limiter on its own, with a settable clock: token buckets, reservations and their settlement,
in this process and in the real Redis (the same Lua bucket every replica shares)."""

from __future__ import annotations

import uuid

import pytest

from emotional_engine.service.errors import ApiError
from emotional_engine.service.ratelimit import RateLimiter


class Clock:
    def __init__(self, t: float = 600.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(params=["process", "redis"])
async def limiter_for(request):
    """Make limiters on one clock, counting in this process or in Redis (a fresh key space per test)."""
    made = []

    def make(requests_per_min, tokens_per_min, clock):
        url = request.getfixturevalue("redis_url") if request.param == "redis" else None
        limiter = RateLimiter(requests_per_min, tokens_per_min, redis_url=url, clock=clock)
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.aclose()


async def requests_taken(limiter, key, n) -> list[int]:
    codes = []
    for _ in range(n):
        try:
            await limiter.check_request(key)
            codes.append(200)
        except ApiError as e:
            codes.append(e.status)
    return codes


async def test_no_burst_of_twice_the_limit_at_a_minute_edge(limiter_for):
    """Fixed windows let 10 requests through at 0:59 and 10 more at 1:00; a bucket lets one minute's worth
    through in any minute: after the burst it refills at a sixtieth of the limit per second."""
    clock, key = Clock(659.0), uuid.uuid4().hex
    limiter = limiter_for(10, 10_000, clock)
    assert await requests_taken(limiter, key, 10) == [200] * 10
    clock.t = 660.5  # the next minute began half a second ago
    assert await requests_taken(limiter, key, 1) == [429]
    clock.t = 659.0 + 6  # 6 s refill one request (10 a minute)
    assert await requests_taken(limiter, key, 2) == [200, 429]
    clock.t = 659.0 + 6 + 60  # a whole minute later the bucket is full again, and holds no more than that
    assert await requests_taken(limiter, key, 11) == [200] * 10 + [429]


async def test_a_refused_request_says_when_one_fits_again(limiter_for):
    clock, key = Clock(), uuid.uuid4().hex
    limiter = limiter_for(2, 10_000, clock)
    await requests_taken(limiter, key, 2)
    with pytest.raises(ApiError) as e:
        await limiter.check_request(key)
    assert e.value.status == 429 and e.value.retry_after == 30  # 2 a minute: one every 30 s


async def test_a_reservation_holds_tokens_and_is_settled_to_what_was_used(limiter_for):
    clock, key = Clock(), uuid.uuid4().hex
    limiter = limiter_for(100, 1000, clock)
    r = await limiter.reserve(key, 800)
    with pytest.raises(ApiError) as e:
        await limiter.reserve(key, 300)  # 800 held: 300 more do not fit
    assert e.value.status == 429 and "tokens" in e.value.message
    await limiter.settle(r, 200)  # used 200: 600 given back
    assert await limiter.available(key, "tokens") == pytest.approx(800)
    clock.t += 12  # refills 200: the bucket is full again
    big = await limiter.reserve(key, 5000)  # more than a minute's budget: held as the whole budget
    assert big.tokens == 1000
    await limiter.settle(big, 1500)  # used more than held: the rest is charged, into debt
    assert await limiter.available(key, "tokens") == pytest.approx(-500)
    with pytest.raises(ApiError) as e:
        await limiter.check_request(key)  # in debt: nothing runs until the bucket refills
    assert e.value.retry_after == 31  # 501 tokens at 1000 a minute
    clock.t += 31
    await limiter.check_request(key)
