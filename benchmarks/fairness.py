#!/usr/bin/env python
"""Fairness of the generation queue (issue 16): how long one key's backlog delays another key's request.

Key A sends `--backlog` requests at once; a moment later key B sends one. Each generation holds a slot
for `--work-ms` (asyncio sleeps: the queue, not the model, is measured). Printed: B's wait for a slot,
median over `--repeats` runs, under the service's `Admission` (keys served in turn) and under a
first-come-first-served queue (an asyncio.Semaphore, what `Admission` was before), in the same
process; and A's mean wait, which fairness must not inflate.

    .venv/bin/python benchmarks/fairness.py [--slots 4] [--backlog 32] [--work-ms 50] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from contextlib import asynccontextmanager

from emotional_engine.service.limits import Admission


class FirstComeFirstServed:
    def __init__(self, slots: int):
        self._sem = asyncio.Semaphore(slots)

    @asynccontextmanager
    async def slot(self, key_id: str):
        async with self._sem:
            yield


async def one_run(queue, backlog: int, work_s: float) -> tuple[float, float]:
    waits: dict[str, list[float]] = {"a": [], "b": []}

    async def request(key: str):
        t0 = time.perf_counter()
        async with queue.slot(key):
            waits[key].append(time.perf_counter() - t0)
            await asyncio.sleep(work_s)

    tasks = [asyncio.ensure_future(request("a")) for _ in range(backlog)]
    await asyncio.sleep(work_s / 10)
    tasks.append(asyncio.ensure_future(request("b")))
    await asyncio.gather(*tasks)
    return waits["b"][0], statistics.mean(waits["a"])


async def main(args) -> None:
    work_s = args.work_ms / 1000
    queues = {
        "keys in turn (Admission)": lambda: Admission(
            args.slots, args.backlog + 1, per_key=args.backlog + 1, max_wait_s=3600
        ),
        "first come first served": lambda: FirstComeFirstServed(args.slots),
    }
    print(f"{args.slots} slots, key A's backlog {args.backlog}, {args.work_ms} ms a generation, {args.repeats} runs")
    results = {}
    for name, make in queues.items():
        runs = [await one_run(make(), args.backlog, work_s) for _ in range(args.repeats)]
        results[name] = (statistics.median(b for b, _ in runs), statistics.median(a for _, a in runs))
        print(
            f"  {name:<26} B waits {results[name][0] * 1000:7.1f} ms   A's mean wait {results[name][1] * 1000:7.1f} ms"
        )
    fair, fifo = results["keys in turn (Admission)"][0], results["first come first served"][0]
    print(f"B's wait: {fair * 1000:.1f} ms against {fifo * 1000:.1f} ms ({fifo / max(fair, 1e-9):.1f}x shorter)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--backlog", type=int, default=32)
    ap.add_argument("--work-ms", type=float, default=50.0)
    ap.add_argument("--repeats", type=int, default=5)
    asyncio.run(main(ap.parse_args()))
