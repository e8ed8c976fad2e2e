"""Everything one app instance holds: settings, engine, store, cache, limits, metrics, live sessions, jobs."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from cachetools import TTLCache

from emotional_engine.config import Settings
from emotional_engine.engine import Engine
from emotional_engine.service.limits import Admission
from emotional_engine.service.live_sessions import LiveSessions
from emotional_engine.service.metrics import Metrics
from emotional_engine.service.ratelimit import RateLimiter

KEY_MEMO_TTL_S = 30  # verified keys are remembered this long (a revocation takes effect within it)
PROBE_TTL_S = 0.5  # /readyz and /metrics read the database and Redis at most this often
STORE_FAILURE_HOLD_S = 0.5  # /readyz names the database for this long after a store call failed


@dataclass
class Service:
    settings: Settings
    engine: Engine
    store: object  # storage.db.Store
    cache: object  # storage.cache.MultiLevelCache
    limiter: RateLimiter
    admission: Admission
    metrics: Metrics
    sessions: LiveSessions
    jobs: object = None  # service.jobs.JobRunner, set once built
    verified_keys: TTLCache = field(default_factory=lambda: TTLCache(maxsize=10_000, ttl=KEY_MEMO_TTL_S))
    # (key id, cache key) -> the id of that key's copy of a cached story
    cached_story_ids: TTLCache = field(default_factory=lambda: TTLCache(maxsize=100_000, ttl=3600))
    model_loaded: bool = False
    local_key_id: str | None = None  # the identity of every caller when auth is off
    # the last readings of the database and Redis (see routes/health.py), shared by all callers
    probes: TTLCache = field(default_factory=lambda: TTLCache(maxsize=1, ttl=PROBE_TTL_S))
    probe_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    store_failed_at: float | None = None  # when a store call last failed (time.monotonic)

    def store_answered(self, ok: bool) -> None:
        """Note how a store call went: a failing one shows in /readyz and the metrics at once (writes can
        fail while the probe's read still answers: a full disk)."""
        if not ok:
            self.store_failed_at = time.monotonic()
        self.metrics.part_down.labels("database").set(0 if ok else 1)

    @property
    def store_failing(self) -> bool:
        return self.store_failed_at is not None and time.monotonic() - self.store_failed_at < STORE_FAILURE_HOLD_S
