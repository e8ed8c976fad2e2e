"""Where torch work runs, so that only one thread on the machine has an OpenMP team.

libgomp keeps a thread team per thread that ever ran a parallel region; once two teams exist on a
2-core machine it throttles spinning and every parallel region pays a futex wake-up, which made
the LM scheduler's decode steps about 1.8x slower. So: the LM scheduler thread owns the only
team; model loading runs in a thread that exits afterwards; the emotion and embedding models run
in one worker thread limited to a single OpenMP thread (no team of its own).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

import torch

T = TypeVar("T")

_models = ThreadPoolExecutor(max_workers=1, thread_name_prefix="models", initializer=lambda: torch.set_num_threads(1))
# Agents' blocking checks. An agent past its timeout is skipped but its thread runs on (Python cannot
# stop a thread), so agents get threads of their own: hung ones never take those that asyncio.to_thread
# gives the store's calls.
_agents = ThreadPoolExecutor(max_workers=4, thread_name_prefix="agents")


async def run_model(fn: Callable[..., T], *args) -> T:
    """Run the emotion/embedding models' work off the event loop, in the single-threaded model worker."""
    return await asyncio.get_running_loop().run_in_executor(_models, partial(fn, *args))


async def run_agent_work(fn: Callable[..., T], *args) -> T:
    """Run an agent's blocking work off the event loop, on the agents' own threads."""
    return await asyncio.get_running_loop().run_in_executor(_agents, partial(fn, *args))


def run_in_passing_thread(fn: Callable[[], T]) -> T:
    """Run torch work in a thread that exits afterwards, so its OpenMP thread team goes with it."""
    out: list = []
    err: list[BaseException] = []

    def target():
        try:
            out.append(fn())
        except BaseException as e:  # re-raised in the caller
            err.append(e)

    t = threading.Thread(target=target, name="lm-loader")
    t.start()
    t.join()
    if err:
        raise err[0]
    return out[0]
