"""Admission for generations: a bounded number run at once, a bounded queue waits, the rest are shed.

`async with gate.slot(key_id): ...` raises 429 when the key already runs its maximum of concurrent
generations, and 503 with Retry-After when the queue is full: refusing early keeps the accepted
requests fast instead of timing everyone out.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import asynccontextmanager

from emotional_engine.service.errors import ApiError


class GenerationGate:
    def __init__(self, slots: int, queue: int, per_key: int, retry_after_s: float = 2.0, metrics=None):
        self.slots, self.max_queue, self.per_key = slots, queue, per_key
        self.retry_after_s = retry_after_s
        self.metrics = metrics
        self._sem = asyncio.Semaphore(slots)
        self._running = 0
        self._waiting = 0
        self._per_key: Counter[str] = Counter()

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def running(self) -> int:
        return self._running

    def _publish(self) -> None:
        if self.metrics is not None:
            self.metrics.queue.set(self._waiting)
            self.metrics.running.set(self._running)

    def check(self, key_id: str) -> None:
        """Raise the 429 or 503 a generation for this key would get now (a stream checks before it starts)."""
        if self._per_key[key_id] >= self.per_key:
            raise ApiError(429, "too_many_concurrent", f"this API key already runs {self.per_key} generations "
                                                       "at once; wait for one to finish", retry_after=self.retry_after_s)
        if self._running >= self.slots and self._waiting >= self.max_queue:
            if self.metrics is not None:
                self.metrics.shed.inc()
            raise ApiError(503, "overloaded", "the server is at capacity and its queue is full; "
                                              f"retry in {self.retry_after_s:.0f} s", retry_after=self.retry_after_s)

    @asynccontextmanager
    async def slot(self, key_id: str):
        """Hold a generation slot (waiting in the queue for one) while the body runs."""
        self.check(key_id)
        self._per_key[key_id] += 1
        self._waiting += 1
        self._publish()
        try:
            try:
                await self._sem.acquire()
            finally:
                self._waiting -= 1
            self._running += 1
            self._publish()
            try:
                yield
            finally:
                self._running -= 1
                self._sem.release()
        finally:
            self._per_key[key_id] -= 1
            if not self._per_key[key_id]:
                del self._per_key[key_id]
            self._publish()
