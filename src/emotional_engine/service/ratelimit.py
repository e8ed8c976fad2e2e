"""Per-key limits on requests and generated tokens per minute, as token buckets: a bucket holds a
minute's allowance, refills continuously at a sixtieth of it per second, and a request takes from it.
So a key gets its limit in any minute without the burst of twice the limit that fixed windows allow
at their edge. A generation reserves its likely tokens before it starts (`reserve`) and settles to
what it used: the rest is charged even into debt (the bucket goes below zero and the key waits for
it to refill), the unused part is given back.

`limits` (the kept library) was the first choice; its strategies can neither give a cost back nor
charge one that does not fit, which a reservation needs both of, hence this small bucket.

With a Redis URL the buckets live in Redis (one Lua call takes from a bucket), so every replica
shares them; without one, or while Redis is unreachable, they live in this process and the limiter
says so (`degraded`), retrying Redis after `retry_s`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from emotional_engine.service.errors import ApiError

log = logging.getLogger(__name__)
MINUTE_S = 60.0

# KEYS[1] = bucket (hash: level, at); ARGV = capacity, refill per second, now, cost, force (1: take it
# even when it does not fit). Returns {taken (1/0), level after}. Numbers go back as strings: Redis
# truncates Lua floats to integers.
_TAKE = """
local cap, rate, now, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local b = redis.call('HMGET', KEYS[1], 'level', 'at')
local level = tonumber(b[1]) or cap
level = math.min(cap, level + math.max(0, now - (tonumber(b[2]) or now)) * rate)
local taken = ARGV[5] == '1' or level >= cost
if taken then level = math.min(cap, level - cost) end
redis.call('HSET', KEYS[1], 'level', tostring(level), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil((cap - level) / rate) + 1)
return {taken and 1 or 0, tostring(level)}
"""


@dataclass
class Reservation:
    key_id: str
    tokens: int


class RateLimiter:
    def __init__(
        self,
        requests_per_min: int,
        tokens_per_min: int,
        redis_url: str | None = None,
        retry_s: float = 1.0,
        on_limit=lambda limit: None,
        clock=time.time,
    ):
        self.limits = {"requests": requests_per_min, "tokens": tokens_per_min}
        self.redis = (
            aioredis.from_url(redis_url, socket_connect_timeout=0.25, socket_timeout=0.25) if redis_url else None
        )
        self.retry_s, self.on_limit, self.clock = retry_s, on_limit, clock
        self._local: dict[tuple[str, str], tuple[float, float]] = {}  # (kind, who) -> (level, at)
        self._pruned_at = 0.0
        self._redis_ok = True
        self._redis_retry_at = 0.0

    @property
    def degraded(self) -> bool:
        """True while Redis is configured but unreachable (limits are per process meanwhile)."""
        return self.redis is not None and not self._redis_ok

    async def _take(self, who: str, kind: str, per_min: int, cost: float, force: bool = False) -> tuple[bool, float]:
        """Take `cost` from the bucket `kind` of `who` (a negative cost gives back); returns (taken, level after)."""
        now = self.clock()
        if self.redis is not None and now >= self._redis_retry_at:
            try:
                args = (per_min, per_min / MINUTE_S, repr(now), repr(float(cost)), int(force))
                taken, level = await self.redis.eval(_TAKE, 1, f"ee:rl:{kind}:{who}", *args)
                if not self._redis_ok:
                    log.warning("Redis is back: rate limits are shared again")
                self._redis_ok = True
                return bool(taken), float(level)
            except (RedisError, OSError) as e:
                if self._redis_ok:
                    log.warning("Redis unreachable for rate limits (%s); counting in this process", e)
                self._redis_ok, self._redis_retry_at = False, now + self.retry_s
        return self._take_here(who, kind, per_min, cost, force, now)

    def _take_here(self, who, kind, per_min, cost, force, now) -> tuple[bool, float]:
        rate = per_min / MINUTE_S
        if now - self._pruned_at >= MINUTE_S:  # a full bucket is the same as none
            self._pruned_at = now
            self._local = {k: (lv, at) for k, (lv, at) in self._local.items() if lv + (now - at) * rate < per_min}
        level, at = self._local.get((kind, who), (per_min, now))
        level = min(per_min, level + max(0.0, now - at) * rate)
        taken = force or level >= cost
        if taken:
            level = min(per_min, level - cost)
        self._local[(kind, who)] = (level, now)
        return taken, level

    async def available(self, who: str, kind: str) -> float:
        """What is left in the bucket now (negative while it is in debt)."""
        return (await self._take(who, kind, self.limits[kind], 0))[1]

    async def ping(self) -> bool:
        """Whether Redis answers now (True when none is configured); updates `degraded`."""
        if self.redis is None:
            return True
        try:
            await self.redis.ping()
            self._redis_ok, self._redis_retry_at = True, 0.0
        except (RedisError, OSError):
            self._redis_ok = False
        return self._redis_ok

    async def check_request(self, key_id: str) -> None:
        """Take one request; 429 when the key has none left, or no tokens left."""
        taken, level = await self._take(key_id, "requests", self.limits["requests"], 1)
        if not taken:
            self._refuse("requests", 1 - level)
        if (tokens := await self.available(key_id, "tokens")) < 1:
            self._refuse("tokens", 1 - tokens)

    async def refuse_failing_client(self, client: str, per_min: int) -> None:
        """429 when `client` (an address) has sent `per_min` bad or missing keys in the last minute, so
        keys cannot be guessed at speed. Asked before the key is read."""
        _, level = await self._take(f"client:{client}", "auth_failures", per_min, 0)
        if level < 1:
            self.on_limit("auth_failures")
            wait = self._wait(1 - level, per_min)
            raise ApiError(
                429,
                "rate_limited",
                f"too many requests with a bad API key from this address; retry after {max(1, round(wait))} s",
                retry_after=wait,
            )

    async def failed_authentication(self, client: str, per_min: int) -> None:
        """Count a bad or missing key from `client`."""
        await self._take(f"client:{client}", "auth_failures", per_min, 1, force=True)

    async def add_tokens(self, key_id: str, n: int) -> None:
        """Charge `n` generated tokens, into debt if need be."""
        if n > 0:
            await self._take(key_id, "tokens", self.limits["tokens"], n, force=True)

    async def reserve(self, key_id: str, n: int) -> Reservation:
        """Hold `n` tokens before generating (at most a whole minute's budget, so a long request can
        still run with a full bucket); 429 when they do not fit."""
        n = min(n, self.limits["tokens"])
        taken, level = await self._take(key_id, "tokens", self.limits["tokens"], n)
        if not taken:
            self._refuse("tokens", n - level)
        return Reservation(key_id, n)

    async def settle(self, reservation: Reservation, used: int) -> None:
        """Charge what was used beyond the reservation; give back what was not."""
        if extra := used - reservation.tokens:
            await self._take(reservation.key_id, "tokens", self.limits["tokens"], extra, force=True)

    def _wait(self, missing: float, per_min: int) -> float:
        """Seconds until `missing` more fits into a bucket of `per_min` a minute."""
        return math.ceil(max(0.0, missing) * MINUTE_S / per_min)

    def _refuse(self, kind: str, missing: float):
        self.on_limit(kind)
        wait = self._wait(missing, self.limits[kind])
        raise ApiError(
            429,
            "rate_limited",
            f"this API key is over its {self.limits[kind]} {kind} per minute; retry after {max(1, wait)} s",
            retry_after=max(1, wait),
        )

    async def aclose(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
