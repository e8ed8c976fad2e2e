#!/usr/bin/env python
"""Fairness of the generation queue (issue 16): how long one key's backlog delays another key's request.

Key A sends `--backlog` requests at once; a moment later key B sends one. Each generation holds a slot
for `--work-ms` (asyncio sleeps: the queue, not the model, is measured). Printed: B's wait for a slot,
median over `--repeats` runs, under the service's `Admission` (keys served in turn) and under a
first-come-first-served queue (an asyncio.Semaphore, what `Admission` was before), in the same
process; and A's mean wait, which fairness must not inflate.

    .venv/bin/python benchmarks/fairness.py [--slots 4] [--backlog 32] [--work-ms 50] [--repeats 5]

With `--http`, end to end instead: a server in its own process (auth on, `--slots` generation slots,
the simulated batched decoder of benchmarks/load.py), key A with `--backlog` jobs accepted and
running or waiting, key B playing a beat of a session: B's time to the beat's first streamed sentence,
median over `--repeats`, with A's backlog and with the server idle.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path

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


# ---- end to end, over HTTP ----------------------------------------------------------------------

PREMISE = "A lighthouse keeper finds a letter from her lost brother."


def serve(args) -> None:
    import uvicorn

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from emotional_engine.config import Settings
    from emotional_engine.service import create_app
    from load import ConstantEmotion, SimulatedDecoder

    settings = Settings(
        database_url=args.database_url,
        rate_limit_requests_per_min=10**9,
        rate_limit_tokens_per_min=10**12,
        max_concurrent_per_key=10**6,
        max_jobs_per_key=10**6,
        generation_slots=args.slots,
        generation_queue=10**6,
        generation_max_wait_s=3600,
        job_words_threshold=100,
    )
    decoder = SimulatedDecoder(step_ms=25, per_seq_ms=4, max_batch=args.slots)
    app = create_app(settings, generator=decoder, emotion=ConstantEmotion(), candidates=1, check_safety=False)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


async def first_sentence_s(c, key: str) -> float:
    """B's new session and one streamed beat: seconds from the turn's request to its first sentence."""
    auth = {"Authorization": f"Bearer {key}"}
    sid = (await c.post("/v1/sessions", json={"premise": PREMISE}, headers=auth)).json()["id"]
    t0 = time.perf_counter()
    headers = auth | {"Accept": "text/event-stream"}
    async with c.stream("POST", f"/v1/sessions/{sid}/turns", json={"action": "I wait."}, headers=headers) as r:
        async for line in r.aiter_lines():
            if line.startswith("event: sentence"):
                return time.perf_counter() - t0
    raise SystemExit(f"B's beat never streamed a sentence (status {r.status_code})")


async def http_main(args) -> None:
    import httpx

    from emotional_engine.storage import Store

    tmp = tempfile.mkdtemp(prefix="ee-fairness-")
    database_url = f"sqlite:///{tmp}/fairness.db"
    store = Store(database_url)
    store.migrate()
    key_a, key_b = store.create_key("a")[0], store.create_key("b")[0]
    store.close()
    port = args.port
    cmd = [sys.executable, __file__, "--serve", "--port", str(port), "--slots", str(args.slots)]
    server = subprocess.Popen([*cmd, "--database-url", database_url], env=os.environ.copy())
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=600) as c:
            for _ in range(1200):
                try:
                    if (await c.get("/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            await first_sentence_s(c, key_b)  # warm up
            idle = [await first_sentence_s(c, key_b) for _ in range(args.repeats)]
            busy, jobs = [], []
            job = {"premise": PREMISE, "words": 400}
            for _ in range(args.repeats):
                for _ in range(args.backlog - len(jobs)):  # A's backlog kept full
                    r = await c.post("/v1/jobs", json=job, headers={"Authorization": f"Bearer {key_a}"})
                    jobs.append(r.json()["id"])
                await asyncio.sleep(0.5)  # A's jobs take every slot and queue behind them
                busy.append(await first_sentence_s(c, key_b))
                states = [
                    (await c.get(f"/v1/jobs/{j}", headers={"Authorization": f"Bearer {key_a}"})).json()["status"]
                    for j in jobs
                ]
                jobs = [j for j, st in zip(jobs, states) if st in ("queued", "running")]
            for j in jobs:
                await c.delete(f"/v1/jobs/{j}", headers={"Authorization": f"Bearer {key_a}"})
        print(f"{args.slots} slots, key A keeps {args.backlog} jobs of 400 words, {args.repeats} beats of key B")
        print(f"  B's first sentence, server idle:      {statistics.median(idle) * 1000:7.1f} ms (median)")
        print(f"  B's first sentence, A's backlog on:   {statistics.median(busy) * 1000:7.1f} ms (median)")
        print(f"  ratio {statistics.median(busy) / statistics.median(idle):.2f}x")
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--backlog", type=int, default=32)
    ap.add_argument("--work-ms", type=float, default=50.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--http", action="store_true", help="end to end through a server process")
    ap.add_argument("--port", type=int, default=8779)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--database-url", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args)
    else:
        asyncio.run(http_main(args) if args.http else main(args))
