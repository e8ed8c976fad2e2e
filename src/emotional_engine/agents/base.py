"""What every agent shares: the typed result, and running several agents at once with timeouts.

Agents follow pydantic-ai's split: the shared state of the story being written is passed in, the
dependencies (generator, emotion model, settings) are injected apart, and each agent returns a
typed pydantic model. An agent that raises or runs past its timeout is skipped: the caller gets
`ok=False` with the reason, names it in the story's `degraded` list, and the failure is counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from pydantic import BaseModel

log = logging.getLogger(__name__)
T = TypeVar("T", bound=BaseModel)

# agent name -> failures and timeouts since start (exported as metrics by the service)
FAILURES: Counter[str] = Counter()


class AgentResult(BaseModel, Generic[T]):
    agent: str
    ok: bool
    output: T | None = None
    error: str | None = None
    ms: float = 0.0


async def run_agent(name: str, call: Callable[[], Awaitable[T]], timeout_s: float) -> AgentResult[T]:
    """Await one agent's work under a timeout; never raises for the agent's own failures."""
    t0 = time.perf_counter()
    try:
        out = await asyncio.wait_for(call(), timeout=timeout_s)
        return AgentResult(agent=name, ok=True, output=out, ms=1000 * (time.perf_counter() - t0))
    except TimeoutError:
        error = f"timed out after {timeout_s:g} s"
    except Exception as e:  # an agent's bug must not sink the story
        log.warning("agent %s failed", name, exc_info=True)
        error = f"{type(e).__name__}: {e}"
    FAILURES[name] += 1
    return AgentResult(agent=name, ok=False, error=error, ms=1000 * (time.perf_counter() - t0))


async def run_parallel(calls: dict[str, tuple[Callable[[], Awaitable[BaseModel]], float]]) -> dict[str, AgentResult]:
    """Run agents concurrently: {name: (call, timeout_s)} -> {name: result}."""
    names = list(calls)
    results = await asyncio.gather(*(run_agent(n, *calls[n]) for n in names))
    return dict(zip(names, results))
