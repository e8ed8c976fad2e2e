"""Admission for generations: a bounded number run at once, a bounded queue waits a bounded time,
the rest are shed.

`async with admission.slot(key_id): ...` (or `ticket = await admission.acquire(key_id)` ... `ticket.release()`
when the slot must outlive the handler, as a stream's does) raises 429 when the key already runs
its maximum of concurrent generations, and 503 with Retry-After when the queue is full or a slot
did not free up within `max_wait_s`. Refusing early keeps the accepted requests fast instead of
timing everyone out: an accepted request starts generating within `max_wait_s`.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import asynccontextmanager

from emotional_engine.service.errors import ApiError


class Ticket:
    """A held generation slot; released once (also if dropped unreleased, e.g. a stream that never started)."""

    def __init__(self, admission: Admission, key_id: str):
        self.admission, self.key_id, self.released = admission, key_id, False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.admission._release(self.key_id)

    def __del__(self):
        self.release()


class Admission:
    def __init__(
        self, slots: int, queue: int, per_key: int, max_wait_s: float = 10.0, retry_after_s: float = 2.0, metrics=None
    ):
        self.slots, self.max_queue, self.per_key = slots, queue, per_key
        self.max_wait_s, self.retry_after_s = max_wait_s, retry_after_s
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

    def _shed(self, why: str) -> ApiError:
        if self.metrics is not None:
            self.metrics.shed.inc()
        return ApiError(
            503,
            "overloaded",
            f"the server is at capacity ({why}); retry in {self.retry_after_s:.0f} s",
            retry_after=self.retry_after_s,
        )

    async def acquire(self, key_id: str) -> Ticket:
        if self._per_key[key_id] >= self.per_key:
            raise ApiError(
                429,
                "too_many_concurrent",
                f"this API key already runs {self.per_key} generations at once; wait for one to finish",
                retry_after=self.retry_after_s,
            )
        if self._running + self._waiting >= self.slots + self.max_queue:
            raise self._shed("its queue is full")
        self._per_key[key_id] += 1  # counted before the first await: no burst slips past the checks
        self._waiting += 1
        self._publish()
        try:
            got = await self._wait_for_slot()
        except BaseException:  # the caller went away while waiting
            got = None
            raise
        finally:
            self._waiting -= 1
            if not got:
                self._drop_key(key_id)
                self._publish()
        if not got:
            raise self._shed(f"no generation slot freed up within {self.max_wait_s:.0f} s")
        self._running += 1
        self._publish()
        return Ticket(self, key_id)

    async def _wait_for_slot(self) -> bool:
        """True once a slot is ours; False after max_wait_s. A permit acquired just as the wait ends
        (or as the caller is cancelled) is kept or given back, never lost."""
        acquiring = asyncio.ensure_future(self._sem.acquire())
        try:
            done, _ = await asyncio.wait({acquiring}, timeout=self.max_wait_s)
        except BaseException:
            acquiring.cancel()
            acquiring.add_done_callback(lambda t: t.cancelled() or self._sem.release())
            raise
        if done:
            return True
        acquiring.cancel()
        try:
            await acquiring
            return True  # acquired after all, in the same moment the wait ended
        except asyncio.CancelledError:
            return False

    def _drop_key(self, key_id: str) -> None:
        self._per_key[key_id] -= 1
        if not self._per_key[key_id]:
            del self._per_key[key_id]

    def _release(self, key_id: str) -> None:
        self._running -= 1
        self._sem.release()
        self._drop_key(key_id)
        self._publish()

    @asynccontextmanager
    async def slot(self, key_id: str):
        """Hold a generation slot (waiting in the queue for one) while the body runs."""
        ticket = await self.acquire(key_id)
        try:
            yield ticket
        finally:
            ticket.release()
