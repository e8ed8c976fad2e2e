"""Running agents in parallel with timeouts: a failing or slow agent is skipped, never fatal."""

import asyncio

from pydantic import BaseModel

from emotional_engine.agents.base import FAILURES, run_parallel


class Out(BaseModel):
    value: int


async def test_agents_run_concurrently_and_failures_are_contained():
    started = asyncio.Event()

    async def waits_for_peer():  # finishes only if `signals` runs at the same time
        await asyncio.wait_for(started.wait(), timeout=2)
        return Out(value=1)

    async def signals():
        started.set()
        return Out(value=2)

    async def crashes():
        raise RuntimeError("model exploded")

    async def hangs():
        await asyncio.sleep(30)

    before = dict(FAILURES)
    results = await run_parallel(
        {"a": (waits_for_peer, 5), "b": (signals, 5), "crash": (crashes, 5), "slow": (hangs, 0.05)}
    )
    assert results["a"].ok and results["a"].output == Out(value=1)
    assert results["b"].output.value == 2
    assert not results["crash"].ok and "model exploded" in results["crash"].error
    assert not results["slow"].ok and "timed out" in results["slow"].error
    assert FAILURES["crash"] == before.get("crash", 0) + 1
    assert FAILURES["slow"] == before.get("slow", 0) + 1
    assert FAILURES["a"] == before.get("a", 0)
