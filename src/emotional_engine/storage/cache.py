"""The design document's multi-level cache (section 3.3): L1 in-process (cachetools TTLCache), L2
Redis shared by every replica, L3 the SQL store. A lower-level hit is copied into the levels above;
a put writes through all of them.

A level that fails (Redis down, database unreachable) is skipped for `retry_after_s`, logged once
per outage and counted; the caller never sees the error, it just gets a miss or a shallower cache.

Only deterministic requests are cacheable (`is_cacheable`), and the key (`request_cache_key`)
covers everything that changes the output.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio
from cachetools import TTLCache
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from emotional_engine.config import redacted_url
from emotional_engine.storage.schema import CACHE_KEY_MAX
from emotional_engine.version import __version__

if TYPE_CHECKING:
    from emotional_engine.config import Settings
    from emotional_engine.storage.db import Store

log = logging.getLogger(__name__)

KEY_FORMAT = 1  # bump when the key's payload changes meaning
LEVELS = ("l1", "l2", "l3")
# what each remote level raises when its backend is unreachable or broken
LEVEL_ERRORS: dict[str, tuple[type[BaseException], ...]] = {
    "l2": (redis.RedisError, OSError),
    "l3": (SQLAlchemyError, OSError),
}


def _plain(value: Mapping | BaseModel | None) -> Any:
    if value is None:
        return {}
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else dict(value)


def is_cacheable(request: Mapping | BaseModel) -> bool:
    """Only a request with a seed gives the same output every time."""
    return _plain(request).get("seed") is not None


def request_cache_key(request: Mapping | BaseModel, model_sha256: str, extra: Mapping | None = None) -> str:
    """SHA-256 over a canonical JSON of everything that changes the output: the request (seed
    included), the model file's hash, `extra` (adapter, sampler settings, ...) and the engine version."""
    if not model_sha256:
        raise ValueError("the model file's sha256 is part of the cache key")
    payload = {
        "format": KEY_FORMAT,
        "engine": __version__,
        "model_sha256": model_sha256,
        "request": _plain(request),
        "extra": _plain(extra),
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class MultiLevelCache:
    def __init__(
        self,
        l1_size: int = 1024,
        l1_ttl_s: float = 300,
        redis_url: str | None = None,
        store: Store | None = None,
        l2_ttl_s: float = 3600,
        l3_ttl_s: float = 86400,
        *,
        namespace: str = "ee:cache:",
        retry_after_s: float = 1.0,  # a failing level costs one failed try a second; recovery is seen within it
        on_event: Callable[[str, str], None] | None = None,
        timer: Callable[[], float] = time.monotonic,
    ):
        """`on_event(level, outcome)` is called for every lookup and failure (outcome: hit, miss,
        error, skipped) so a service can feed its metrics; `stats()` holds the same counts."""
        if min(l1_size, l1_ttl_s, l2_ttl_s, l3_ttl_s) <= 0:
            raise ValueError("cache sizes and times to live must be positive")
        self._l1: TTLCache[str, bytes] = TTLCache(maxsize=l1_size, ttl=l1_ttl_s, timer=timer)
        self._l1_lock = threading.Lock()  # TTLCache is not thread-safe
        self.redis_url, self.namespace = redis_url, namespace
        opts = dict(socket_connect_timeout=0.25, socket_timeout=0.5)  # a dead Redis costs at most that
        self._redis = redis.Redis.from_url(redis_url, **opts) if redis_url else None
        self._aredis = redis.asyncio.Redis.from_url(redis_url, **opts) if redis_url else None
        self._store = store
        self.l2_ttl_s, self.l3_ttl_s, self.retry_after_s = l2_ttl_s, l3_ttl_s, retry_after_s
        self._on_event, self._timer = on_event, timer
        self._counts = {level: Counter() for level in LEVELS}
        self._down_until = {"l2": 0.0, "l3": 0.0}  # timer value before which a failed level is skipped
        self._down = {"l2": False, "l3": False}

    @classmethod
    def from_settings(cls, settings: Settings, store: Store | None = None, **kw) -> MultiLevelCache:
        ttl = settings.cache_ttl_s
        return cls(settings.cache_l1_size, ttl, settings.redis_url, store, ttl, ttl, **kw)

    # ---- bookkeeping ------------------------------------------------------------------------

    def _count(self, level: str, outcome: str) -> None:
        self._counts[level][outcome] += 1
        if self._on_event is not None:
            self._on_event(level, outcome)

    def _configured(self, level: str) -> bool:
        return (self._redis if level == "l2" else self._store) is not None

    def _usable(self, level: str) -> bool:
        if not self._configured(level):
            return False
        if self._timer() < self._down_until[level]:
            self._count(level, "skipped")
            return False
        return True

    def _failed(self, level: str, exc: BaseException) -> None:
        self._count(level, "error")
        self._down_until[level] = self._timer() + self.retry_after_s
        if not self._down[level]:
            self._down[level] = True
            what = f"Redis at {redacted_url(self.redis_url)}" if level == "l2" else "the SQL store"
            log.warning(
                "cache %s (%s) failed: %s; serving from the other levels, retrying every %.0f s",
                level,
                what,
                exc,
                self.retry_after_s,
            )

    def _succeeded(self, level: str) -> None:
        if self._down[level]:
            self._down[level] = False
            log.warning("cache %s is back", level)

    def available(self, level: str) -> bool:
        """Configured and not failing (for /readyz)."""
        return self._configured(level) and not self._down[level]

    def stats(self) -> dict[str, dict[str, Any]]:
        out = {}
        for level in LEVELS:
            c = self._counts[level]
            row = {"hits": c["hit"], "misses": c["miss"], "errors": c["error"], "skipped": c["skipped"]}
            out[level] = {
                **row,
                "configured": level == "l1" or self._configured(level),
                "available": level == "l1" or self.available(level),
            }
        return out

    # ---- L1 ---------------------------------------------------------------------------------

    def _l1_get(self, key: str) -> bytes | None:
        with self._l1_lock:
            value = self._l1.get(key)
        self._count("l1", "miss" if value is None else "hit")
        return value

    def _l1_put(self, key: str, value: bytes) -> None:
        with self._l1_lock:
            self._l1[key] = value

    # ---- remote levels (L2 Redis, L3 store), each guarded -----------------------------------

    def _looked_up(self, level: str, value: bytes | None) -> bytes | None:
        self._succeeded(level)
        self._count(level, "miss" if value is None else "hit")
        return value

    def _remote_get(self, level: str, key: str) -> bytes | None:
        if not self._usable(level):
            return None
        try:
            value = self._redis.get(self.namespace + key) if level == "l2" else self._store.cache_get(key)
        except LEVEL_ERRORS[level] as e:
            self._failed(level, e)
            return None
        return self._looked_up(level, value)

    def _remote_put(self, level: str, key: str, value: bytes) -> None:
        if not self._usable(level):
            return
        try:
            if level == "l2":
                self._redis.set(self.namespace + key, value, px=int(self.l2_ttl_s * 1000))
            else:
                self._store.cache_put(key, value, self.l3_ttl_s)
        except LEVEL_ERRORS[level] as e:
            self._failed(level, e)
        else:
            self._succeeded(level)

    async def _aremote_get(self, level: str, key: str) -> bytes | None:
        if not self._usable(level):
            return None
        try:
            if level == "l2":
                value = await self._aredis.get(self.namespace + key)
            else:
                value = await asyncio.to_thread(self._store.cache_get, key)
        except LEVEL_ERRORS[level] as e:
            self._failed(level, e)
            return None
        return self._looked_up(level, value)

    async def _aremote_put(self, level: str, key: str, value: bytes) -> None:
        if not self._usable(level):
            return
        try:
            if level == "l2":
                await self._aredis.set(self.namespace + key, value, px=int(self.l2_ttl_s * 1000))
            else:
                await asyncio.to_thread(self._store.cache_put, key, value, self.l3_ttl_s)
        except LEVEL_ERRORS[level] as e:
            self._failed(level, e)
        else:
            self._succeeded(level)

    async def aping(self) -> bool:
        """Whether Redis (L2) answers now (True when none is configured). Asked by /readyz: without it a
        level that failed would be reported down until a request happened to use it again."""
        if self._aredis is None:
            return True
        try:
            await self._aredis.ping()
        except LEVEL_ERRORS["l2"] as e:
            if not self._down["l2"]:
                self._failed("l2", e)
            return False
        self._down_until["l2"] = 0.0
        self._succeeded("l2")
        return True

    # ---- public API -------------------------------------------------------------------------

    def get(self, key: str) -> tuple[bytes, str] | tuple[None, None]:
        """(value, level it came from) or (None, None). A hit below L1 is copied upwards."""
        _check_key(key)
        if (value := self._l1_get(key)) is not None:
            return value, "l1"
        if (value := self._remote_get("l2", key)) is not None:
            self._l1_put(key, value)
            return value, "l2"
        if (value := self._remote_get("l3", key)) is not None:
            self._l1_put(key, value)
            self._remote_put("l2", key, value)
            return value, "l3"
        return None, None

    def put(self, key: str, value: bytes) -> None:
        """Write through every level."""
        _check_key(key)
        _check_bytes(value)
        self._l1_put(key, value)
        self._remote_put("l2", key, value)
        self._remote_put("l3", key, value)

    async def aget(self, key: str) -> tuple[bytes, str] | tuple[None, None]:
        _check_key(key)
        if (value := self._l1_get(key)) is not None:
            return value, "l1"
        if (value := await self._aremote_get("l2", key)) is not None:
            self._l1_put(key, value)
            return value, "l2"
        if (value := await self._aremote_get("l3", key)) is not None:
            self._l1_put(key, value)
            await self._aremote_put("l2", key, value)
            return value, "l3"
        return None, None

    async def aput(self, key: str, value: bytes) -> None:
        _check_key(key)
        _check_bytes(value)
        self._l1_put(key, value)
        await self._aremote_put("l2", key, value)
        await self._aremote_put("l3", key, value)

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()

    async def aclose(self) -> None:
        if self._aredis is not None:
            await self._aredis.aclose()
        self.close()


def _check_key(key: str) -> None:
    # the SQL level's limit, applied to every level so a key behaves the same wherever it lands
    if not isinstance(key, str) or not 1 <= len(key) <= CACHE_KEY_MAX:
        raise ValueError(f"cache keys are strings of 1-{CACHE_KEY_MAX} characters (see request_cache_key)")


def _check_bytes(value: Any) -> None:
    if not isinstance(value, bytes):
        raise TypeError(f"cache values are bytes (encode JSON first), not {type(value).__name__}")
