"""Admission for generations: a bounded number run at once, a bounded queue waits a bounded time,
the rest are shed.

`async with admission.slot(key_id): ...` (or `ticket = await admission.acquire(key_id)` ... `ticket.release()`
when the slot must outlive the handler, as a stream's does) raises 429 when the key already runs
its maximum of concurrent generations, and 503 with Retry-After when the queue is full or a slot
did not free up within `max_wait_s`. Refusing early keeps the accepted requests fast instead of
timing everyone out: an accepted request starts generating within `max_wait_s`. Waiting requests are
served by key in turn, not first come first served, so one key's backlog does not delay the others.
Background work (jobs) holds at most `background_slots` of the slots at once: a slot is held for a
whole story, so a backlog of jobs would otherwise take every slot and a player's beat would wait for
a job to finish; this way interactive requests always have the rest.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from contextlib import asynccontextmanager, nullcontext

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
        self,
        slots: int,
        queue: int,
        per_key: int,
        max_wait_s: float = 10.0,
        retry_after_s: float = 2.0,
        metrics=None,
        background_slots: int | None = None,
    ):
        self.slots, self.max_queue, self.per_key = slots, queue, per_key
        self._background = asyncio.Semaphore(min(slots, background_slots or max(1, slots // 2)))
        self.max_wait_s, self.retry_after_s = max_wait_s, retry_after_s
        self.metrics = metrics
        self._free = slots
        self._running = 0
        self._waiting = 0
        self._per_key: Counter[str] = Counter()
        # waiters by key, and the keys in the order they are served: a freed slot goes to the next
        # key in turn (round robin), so one key's backlog never holds another key's request back by
        # more than one grant per waiting key
        self._queues: dict[str, deque[asyncio.Future]] = {}
        self._turns: deque[str] = deque()

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
        if self._free and not self._turns:
            self._free -= 1
        elif not await self._wait_for_slot(key_id):
            self._drop_key(key_id)
            self._publish()
            raise self._shed(f"no generation slot freed up within {self.max_wait_s:.0f} s")
        self._running += 1
        self._publish()
        return Ticket(self, key_id)

    async def _wait_for_slot(self, key_id: str) -> bool:
        """Queue for a slot in `key_id`'s turn: True once it is ours, False after max_wait_s. A slot
        granted just as the wait ends is kept; one granted as the caller is cancelled is passed on."""
        granted = asyncio.get_running_loop().create_future()
        self._queues.setdefault(key_id, deque()).append(granted)
        if key_id not in self._turns:
            self._turns.append(key_id)
        self._waiting += 1
        self._publish()
        try:
            done, _ = await asyncio.wait({granted}, timeout=self.max_wait_s)  # (wait_for can swallow a cancel)
            return bool(done) or self._withdraw(key_id, granted)
        except BaseException:  # the caller went away while waiting
            if self._withdraw(key_id, granted):
                self._pass_slot_on()
            self._drop_key(key_id)
            raise
        finally:
            self._waiting -= 1
            self._publish()

    def _withdraw(self, key_id: str, granted: asyncio.Future) -> bool:
        """Leave the queue; True if the slot was granted meanwhile (it is then the caller's)."""
        if granted.done():
            return True
        granted.cancel()
        queue = self._queues[key_id]
        queue.remove(granted)
        if not queue:
            del self._queues[key_id]
            self._turns.remove(key_id)
        return False

    def _pass_slot_on(self) -> None:
        """A slot is free: grant it to the first waiter of the key whose turn it is, else keep it free."""
        while self._turns:
            key = self._turns.popleft()
            queue = self._queues[key]
            granted = queue.popleft()
            if queue:
                self._turns.append(key)  # its next waiter goes to the back of the round
            else:
                del self._queues[key]
            if not granted.done():
                granted.set_result(True)
                return
        self._free += 1

    def _drop_key(self, key_id: str) -> None:
        self._per_key[key_id] -= 1
        if not self._per_key[key_id]:
            del self._per_key[key_id]

    def _release(self, key_id: str) -> None:
        self._running -= 1
        self._drop_key(key_id)
        self._pass_slot_on()
        self._publish()

    @asynccontextmanager
    async def slot(self, key_id: str, background: bool = False):
        """Hold a generation slot (waiting in the queue for one) while the body runs; `background` (a
        job): first one of the background slots, waited for as long as it takes."""
        async with self._background if background else nullcontext():
            ticket = await self.acquire(key_id)
            try:
                yield ticket
            finally:
                ticket.release()
