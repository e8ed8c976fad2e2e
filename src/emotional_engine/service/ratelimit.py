"""Per-key limits on requests and generated tokens per minute (fixed one-minute windows). A
generation reserves its likely tokens before it starts (`reserve`) and settles to what it used.

With a Redis URL the counters live in Redis (INCRBY + EXPIRE in one Lua call), so every replica
shares them; without one, or while Redis is unreachable, they live in this process and the
limiter says so (`degraded`), retrying Redis after `retry_s`.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from emotional_engine.service.errors import ApiError

log = logging.getLogger(__name__)
WINDOW_S = 60

# KEYS[1] = counter; ARGV[1] = increment, ARGV[2] = ttl. Returns the new count.
_INCR = (
    "local n = redis.call('INCRBY', KEYS[1], ARGV[1]) if n == tonumber(ARGV[1]) then "
    "redis.call('EXPIRE', KEYS[1], ARGV[2]) end return n"
)


@dataclass
class Reservation:
    key_id: str
    tokens: int
    window: int  # the minute it was counted in


class RateLimiter:
    def __init__(
        self,
        requests_per_min: int,
        tokens_per_min: int,
        redis_url: str | None = None,
        retry_s: float = 5.0,
        on_limit=lambda limit: None,
        clock=time.time,
    ):
        self.limits = {"requests": requests_per_min, "tokens": tokens_per_min}
        self.redis = (
            aioredis.from_url(redis_url, socket_connect_timeout=0.25, socket_timeout=0.25) if redis_url else None
        )
        self.retry_s, self.on_limit, self.clock = retry_s, on_limit, clock
        self._local: dict[tuple[str, str, int], int] = defaultdict(int)
        self._redis_ok = True
        self._redis_retry_at = 0.0

    @property
    def degraded(self) -> bool:
        """True while Redis is configured but unreachable (limits are per process meanwhile)."""
        return self.redis is not None and not self._redis_ok

    async def _add(self, key_id: str, kind: str, n: int) -> tuple[int, float]:
        """Add n to this window's counter; returns (count, seconds left in the window)."""
        now = self.clock()
        window = int(now // WINDOW_S)
        left = (window + 1) * WINDOW_S - now
        if self.redis is not None and now >= self._redis_retry_at:
            try:
                count = await self.redis.eval(_INCR, 1, f"ee:rl:{kind}:{key_id}:{window}", n, WINDOW_S + 1)
                if not self._redis_ok:
                    log.warning("Redis is back: rate limits are shared again")
                self._redis_ok = True
                return int(count), left
            except (RedisError, OSError) as e:
                if self._redis_ok:
                    log.warning("Redis unreachable for rate limits (%s); counting in this process", e)
                self._redis_ok, self._redis_retry_at = False, now + self.retry_s
        for k in [k for k in self._local if k[2] < window]:  # drop finished windows
            del self._local[k]
        self._local[(key_id, kind, window)] += n
        return self._local[(key_id, kind, window)], left

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
        """Count one request; 429 when the key is over its requests or its tokens this minute."""
        count, left = await self._add(key_id, "requests", 1)
        if count > self.limits["requests"]:
            self._refuse("requests", left)
        tokens, left = await self._add(key_id, "tokens", 0)
        if tokens >= self.limits["tokens"]:
            self._refuse("tokens", left)

    async def failed_authentication(self, client: str, per_min: int) -> None:
        """Count a bad or missing key from `client` (an address); 429 once it has had `per_min` this minute,
        so keys cannot be guessed at speed. Checked before the key is, so a limited client is refused unread."""
        count, left = await self._add(f"client:{client}", "auth_failures", 1)
        if count > per_min:
            self.on_limit("auth_failures")
            raise ApiError(
                429,
                "rate_limited",
                f"too many requests with a bad API key from this address; retry after {max(1, round(left))} s",
                retry_after=left,
            )

    async def auth_failures(self, client: str) -> int:
        """Bad keys counted from `client` this minute."""
        return (await self._add(f"client:{client}", "auth_failures", 0))[0]

    async def add_tokens(self, key_id: str, n: int) -> None:
        if n > 0:
            await self._add(key_id, "tokens", n)

    async def reserve(self, key_id: str, n: int) -> Reservation:
        """Hold `n` tokens of this minute's budget before generating (at most the whole budget, so a
        long request can still run in an unused minute); 429 when they do not fit."""
        n = min(n, self.limits["tokens"])
        count, left = await self._add(key_id, "tokens", n)
        if count > self.limits["tokens"]:
            await self._add(key_id, "tokens", -n)
            self._refuse("tokens", left)
        return Reservation(key_id, n, int(self.clock() // WINDOW_S))

    async def settle(self, reservation: Reservation, used: int) -> None:
        """Charge what was used beyond the reservation; give back what was not, if still in its minute."""
        extra = used - reservation.tokens
        if extra > 0:
            await self._add(reservation.key_id, "tokens", extra)
        elif extra < 0 and int(self.clock() // WINDOW_S) == reservation.window:
            await self._add(reservation.key_id, "tokens", extra)

    def _refuse(self, kind: str, left: float):
        self.on_limit(kind)
        raise ApiError(
            429,
            "rate_limited",
            f"this API key is over its {self.limits[kind]} {kind} per minute; retry after {max(1, round(left))} s",
            retry_after=left,
        )

    async def aclose(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
