"""Where torch work runs, so that only one thread on the machine has an OpenMP team.

libgomp keeps a thread team per thread that ever ran a parallel region; once two teams exist on a
2-core machine it throttles spinning and every parallel region pays a futex wake-up, which made
the LM scheduler's decode steps about 1.8x slower. So: the LM scheduler thread owns the only
team; model loading runs in a thread that exits afterwards; the emotion and embedding models, and
the agents' work, run in worker threads limited to a single OpenMP thread (no team of their own).

That limit must stay in its thread: `torch.set_num_threads(1)` also lowers torch's process-wide
count, which every thread started later takes up, the LM scheduler's included (it then decoded on
one core of two). So the worker sets its own OpenMP thread count.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

import torch

T = TypeVar("T")
log = logging.getLogger(__name__)


def one_openmp_thread() -> None:
    """Run this thread's torch work on this thread alone (no OpenMP team of its own), leaving torch's
    process-wide thread count as it is."""
    torch.get_num_threads()  # torch sets a thread's OpenMP count on its first use: before ours, not after
    try:
        ctypes.CDLL("libgomp.so.1").omp_set_num_threads(1)  # torch's own libgomp: the soname is loaded once
    except (OSError, AttributeError):  # not GNU OpenMP (macOS's libomp, a native build): leave it
        log.debug("no libgomp: the worker thread keeps torch's thread count")


_models = ThreadPoolExecutor(max_workers=1, thread_name_prefix="models", initializer=one_openmp_thread)
# Agents' blocking checks. An agent past its timeout is skipped but its thread runs on (Python cannot
# stop a thread), so agents get threads of their own: hung ones never take those that asyncio.to_thread
# gives the store's calls.
_agents = ThreadPoolExecutor(max_workers=4, thread_name_prefix="agents", initializer=one_openmp_thread)


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
