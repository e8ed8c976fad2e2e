"""The generation queue on its own: slots, shedding, and keys served in turn."""

from __future__ import annotations

import asyncio

import pytest

from emotional_engine.service.errors import ApiError
from emotional_engine.service.limits import Admission


async def _queue(admission: Admission, key: str, order: list[str]):
    ticket = await admission.acquire(key)
    order.append(key)
    return ticket


async def test_a_freed_slot_goes_to_the_next_key_in_turn_not_to_the_longest_backlog():
    admission = Admission(slots=1, queue=10, per_key=5)
    held = await admission.acquire("a")
    order: list[str] = []
    waiters = [asyncio.ensure_future(_queue(admission, "a", order)) for _ in range(3)]
    await asyncio.sleep(0)
    waiters.append(asyncio.ensure_future(_queue(admission, "b", order)))  # b comes last
    await asyncio.sleep(0)
    assert admission.waiting == 4
    held.release()
    while len(order) < 4:  # each holder lets the next one in
        await asyncio.sleep(0)
        for w in waiters:
            if w.done() and not w.result().released:
                w.result().release()
    assert order == ["a", "b", "a", "a"]  # first come first served would give b the slot last
    assert admission.running == 0 and admission.waiting == 0


async def test_a_waiter_that_goes_away_leaves_the_queue_and_passes_a_granted_slot_on():
    admission = Admission(slots=1, queue=10, per_key=5)
    held = await admission.acquire("a")
    gone = asyncio.ensure_future(admission.acquire("b"))
    stays = asyncio.ensure_future(admission.acquire("c"))
    await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    held.release()
    ticket = await asyncio.wait_for(stays, 1)
    assert ticket.key_id == "c" and admission.running == 1 and admission.waiting == 0
    ticket.release()
    assert (await admission.acquire("b")).key_id == "b"  # b's count was dropped with its wait


async def test_a_wait_past_the_limit_is_shed_and_the_queue_stays_consistent():
    admission = Admission(slots=1, queue=1, per_key=5, max_wait_s=0.05)
    held = await admission.acquire("a")
    with pytest.raises(ApiError) as e:
        await admission.acquire("b")
    assert e.value.status == 503 and admission.waiting == 0
    held.release()
    assert (await admission.acquire("b")).key_id == "b"


async def test_jobs_never_hold_every_slot_so_a_beat_gets_one_at_once():
    """A job holds its slot for a whole story: with a backlog of jobs in every slot, a player's beat
    would wait for a story to finish. Background work gets at most `background_slots`."""
    admission = Admission(slots=4, queue=100, per_key=100, background_slots=2)
    release, running = asyncio.Event(), []

    async def job():
        async with admission.slot("a", background=True):
            running.append(1)
            await release.wait()

    jobs = [asyncio.ensure_future(job()) for _ in range(10)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(running) == 2 and admission.running == 2
    beat = asyncio.ensure_future(admission.acquire("b"))
    await asyncio.sleep(0)
    assert beat.done() and admission.running == 3  # granted at once, no job had to finish
    beat.result().release()
    release.set()
    await asyncio.gather(*jobs)
    assert len(running) == 10 and admission.running == 0


def test_background_slots_default_to_half_the_slots():
    assert Admission(slots=16, queue=0, per_key=4)._background._value == 8
    assert Admission(slots=1, queue=0, per_key=4)._background._value == 1
