"""Load benchmark of the HTTP service: an asyncio httpx client against a uvicorn server on loopback.

Prints the design document's tables:
1. latency (P50/P95/P99) and throughput of a beat (a session turn, about 40 tokens) and of a 300-word
   story: one request at a time, concurrent without cache, concurrent with the cache warm;
2. scalability: N simulated users playing sessions with reading time between a beat and their next
   action: success rate, P50/P99 time to first text, P50 beat completion, beats/s, server CPU and memory;
3. with `--openai 1,8,32`: the OpenAI-compatible chat route (through the official `openai` client,
   streamed, the conversation growing turn by turn) beside the native session route, the same number of
   clients playing the same turns: P50 time to the first text and to the whole beat, and the difference.

The server runs in its own process (`--serve`), with auth off and rate limits out of the way. Its
language model is either the embedded one (`--lm embedded`: real numbers, slow on 2 cores) or a
simulated batched decoder (`--lm simulated`: a step loop like the builtin runtime's, `--step-ms` per
decode step for up to `--max-batch` sequences at once), which measures what the service itself
sustains around a decoder of known speed. The emotion model is the real one with `--lm embedded`,
a constant-time fake with `--lm simulated`.

    python benchmarks/load.py --lm simulated                       # all tables, a few minutes
    python benchmarks/load.py --lm embedded --users 1,2,4 --duration-s 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

HERE = Path(__file__).resolve().parent
BEAT_TOKENS = 40
STATUS = {0: "transport error", 599: "error event", 200: "no beat"}
PREMISE = "A lighthouse keeper finds a letter from her lost brother."


# ---- the server side ----------------------------------------------------------------------------


class SimulatedDecoder:
    """A continuous-batching decoder stand-in: one loop; each step takes step_ms + per_seq_ms * batch
    and gives every running sequence (at most max_batch) one token."""

    def __init__(self, step_ms: float, per_seq_ms: float, max_batch: int):
        from emotional_engine.lm.generator import ModelInfo

        self.info = ModelInfo("simulated", "simulated-decoder", sha256="5" * 64, weight_format="fp16")
        self.supports_logits_processors = False
        self.step_ms, self.per_seq_ms, self.max_batch = step_ms, per_seq_ms, max_batch
        self._waiting: list = []
        self._loop_task = None

    def count_tokens(self, text: str) -> int:
        from emotional_engine.text import estimate_tokens

        return estimate_tokens(text)

    def vocabulary(self):
        return None

    def emotion_context(self, emotion: str):
        return None

    async def _steps(self):
        running: list = []
        while True:
            while self._waiting and len(running) < self.max_batch:
                running.append(self._waiting.pop(0))
            if not running:
                await asyncio.sleep(0.001)
                continue
            await asyncio.sleep((self.step_ms + self.per_seq_ms * len(running)) / 1000)
            for r in running:
                r["q"].put_nowait(1)
                r["left"] -= 1
            running = [r for r in running if r["left"] > 0 and not r["gone"]]

    async def stream(self, prompt, params, *, kv_key=None, processors=()):
        from emotional_engine.lm.generator import Piece

        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._steps())
        words = "She read the letter again by the lamp's light.".split()  # 10 tokens a sentence
        r = {"q": asyncio.Queue(), "left": min(params.max_tokens, BEAT_TOKENS + 8), "gone": False}
        self._waiting.append(r)
        n = 0
        try:
            for i in range(r["left"]):
                await r["q"].get()
                n += 1
                yield Piece(f" {words[i % len(words)]}", token_id=1)
        finally:
            r["gone"] = True
        yield Piece("", finish_reason="length", usage={"completion_tokens": n})

    async def complete(self, prompt, params, *, kv_key=None, processors=()):
        from emotional_engine.lm.generator import Completion

        text = "".join([p.text async for p in self.stream(prompt, params)])
        return Completion(text=text.strip(), finish_reason="length", completion_tokens=len(text.split()))

    async def aclose(self):
        pass


class ConstantEmotion:
    def __init__(self):
        from types import SimpleNamespace

        import numpy as np

        self.embedder = SimpleNamespace(encode=lambda texts, **kw: np.ones((len(texts), 8)) / np.sqrt(8))

    def score_passages(self, texts):
        from types import SimpleNamespace

        return [
            SimpleNamespace(
                valence=0.1, arousal=0.0, emotion="anticipation", scores={"anticipation": 0.6, "neutral": 0.4}
            )
            for _ in texts
        ]


def serve(args) -> None:
    import uvicorn

    from emotional_engine.config import Settings
    from emotional_engine.service import create_app

    settings = Settings(
        database_url=f"sqlite:///{args.db}",
        auth_enabled=False,
        redis_url=args.redis_url,
        rate_limit_requests_per_min=10**9,
        rate_limit_tokens_per_min=10**12,
        max_concurrent_per_key=10**6,
        max_sessions_per_key=10**6,
        generation_slots=args.slots,
        generation_queue=args.queue,
        generation_max_wait_s=args.max_wait_s,
        job_words_threshold=5000,
        session_idle_ttl_s=3600,
    )
    kw = {}
    if args.lm == "simulated":
        kw = dict(
            generator=SimulatedDecoder(args.step_ms, args.per_seq_ms, args.max_batch),
            emotion=ConstantEmotion(),
            check_safety=False,
        )
    app = create_app(settings, candidates=args.candidates, **kw)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", backlog=4096)


# ---- the client side ----------------------------------------------------------------------------


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q / 100 * len(xs) + 0.5) - 1))]


@dataclass
class Result:
    ok: bool
    status: int
    total_s: float
    first_s: float | None = None
    words: int = 0  # the beat's words
    turn: int | None = None  # the beat's index in its session
    reuse: float | None = None  # the share of the beat's prompt the runtime found in its kept cache

    @property
    def words_per_s(self) -> float | None:
        """How fast the beat's text streamed after its first sentence."""
        if not self.words or self.first_s is None or self.total_s <= self.first_s:
            return None
        return self.words / (self.total_s - self.first_s)


@dataclass
class Tally:
    results: list[Result] = field(default_factory=list)

    def ok(self):
        return [r for r in self.results if r.ok]

    def row(self, wall_s: float) -> str:
        lat = [r.total_s * 1000 for r in self.ok()]
        return (
            f"{len(self.ok())}/{len(self.results)} | {pct(lat, 50):.1f} | {pct(lat, 95):.1f} | "
            f"{pct(lat, 99):.1f} | {len(self.ok()) / wall_s:.2f}"
        )


async def new_session(c: httpx.AsyncClient, seed: int | None) -> str:
    r = await c.post("/v1/sessions", json={"premise": PREMISE, "culture": "en-GB", "seed": seed})
    r.raise_for_status()
    return r.json()["id"]


async def beat(c: httpx.AsyncClient, sid: str, action: str) -> Result:
    """One streamed turn: time to the first sentence and to the committed beat."""
    t0 = time.perf_counter()
    first = None
    try:
        async with c.stream(
            "POST", f"/v1/sessions/{sid}/turns", json={"action": action}, headers={"Accept": "text/event-stream"}
        ) as r:
            if r.status_code != 200:
                await r.aread()
                return Result(False, r.status_code, time.perf_counter() - t0)
            event, done = None, None
            async for line in r.aiter_lines():
                if line.startswith("event: "):
                    event = line[len("event: ") :]
                if event == "sentence" and first is None:
                    first = time.perf_counter() - t0
                if event == "beat" and line.startswith("data: "):
                    done = json.loads(line[len("data: ") :])
                if event == "error":
                    return Result(False, 599, time.perf_counter() - t0, first)
            if done is None:
                return Result(False, 200, time.perf_counter() - t0, first)
            prompt = done.get("prompt_tokens") or 0
            reuse = done.get("reused_tokens", 0) / prompt if prompt else None
            return Result(True, 200, time.perf_counter() - t0, first, len(done["text"].split()), done["index"], reuse)
    except httpx.HTTPError:
        return Result(False, 0, time.perf_counter() - t0, first)


async def story(c: httpx.AsyncClient, seed: int | None) -> Result:
    t0 = time.perf_counter()
    try:
        r = await c.post("/v1/stories", json={"premise": PREMISE, "words": 300, "seed": seed, "culture": "en-GB"})
    except httpx.HTTPError:
        return Result(False, 0, time.perf_counter() - t0)
    return Result(r.status_code == 200, r.status_code, time.perf_counter() - t0)


async def latency_tables(c: httpx.AsyncClient, n: int, conc: int) -> list[str]:
    rows = []
    # beats: one at a time / concurrent (a session per worker; beats are never cached: each turn is new)
    for name, workers in (("one at a time", 1), (f"concurrent ({conc})", conc)):
        tally, sids = Tally(), [await new_session(c, None) for _ in range(workers)]
        t0 = time.perf_counter()

        async def work(sid, k, tally=tally):
            for i in range(k):
                tally.results.append(await beat(c, sid, f"I walk on, step {i}."))

        await asyncio.gather(*(work(s, max(1, n // workers)) for s in sids))
        rows.append(f"| beat | {name} | {tally.row(time.perf_counter() - t0)} |")
    # stories: one at a time (no seed), concurrent without cache (distinct seeds), concurrent warm cache
    for name, workers, seeds in (
        ("one at a time", 1, None),
        (f"concurrent ({conc}), no cache", conc, "fresh"),
        ("one at a time, cache warm", 1, "warm"),
        (f"concurrent ({conc}), cache warm", conc, "warm"),
    ):
        if seeds == "warm":
            await story(c, 7)  # fills the cache
        tally, t0 = Tally(), time.perf_counter()

        async def work(k, tally=tally, seeds=seeds):
            for _ in range(k):
                seed = 7 if seeds == "warm" else (random.randrange(10**9) if seeds == "fresh" else None)
                tally.results.append(await story(c, seed))

        k = max(1, (n * 5 if seeds == "warm" else n) // workers)
        await asyncio.gather(*(work(k) for _ in range(workers)))
        rows.append(f"| 300-word story | {name} | {tally.row(time.perf_counter() - t0)} |")
    return rows


async def ttft_buckets(c: httpx.AsyncClient) -> dict[float, float]:
    """The server's cumulative beat time-to-first-token histogram: {upper bound s: count}."""
    out = {}
    for line in (await c.get("/metrics")).text.splitlines():
        if line.startswith('ee_time_to_first_token_seconds_bucket{kind="beat"'):
            le = line.split('le="')[1].split('"')[0]
            out[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return out


def bucket_quantile(before: dict, after: dict, q: float) -> str:
    """The histogram bucket the q-quantile of the observations between two scrapes falls in, as '<= X ms'."""
    delta = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    total = delta[-1][1] if delta else 0
    if not total:
        return "-"
    for le, n in delta:
        if n >= q * total:
            return f"<= {le * 1000:.0f}" if le != float("inf") else "> 10000"
    return "-"


async def users_row(c: httpx.AsyncClient, users: int, reading_s: float, duration_s: float, server) -> tuple[str, Tally]:
    tally = Tally()
    buckets0 = await ttft_buckets(c)
    cpu0 = server.cpu_times()
    rss = [server.memory_info().rss]
    stop = time.perf_counter() + duration_s

    async def player(u):
        await asyncio.sleep(random.uniform(0, reading_s))  # users arrive spread over one reading time
        try:
            sid = await new_session(c, None)
        except httpx.HTTPError:
            tally.results.append(Result(False, 0, 0.0))
            return
        i = 0
        while time.perf_counter() < stop:
            tally.results.append(await beat(c, sid, f"I look around, moment {i}."))
            i += 1
            await asyncio.sleep(random.uniform(0.5, 1.5) * reading_s)

    async def sample_memory():
        while time.perf_counter() < stop:
            rss.append(server.memory_info().rss)
            await asyncio.sleep(1)

    t0 = time.perf_counter()
    await asyncio.gather(sample_memory(), *(player(u) for u in range(users)))
    wall = time.perf_counter() - t0
    cpu1 = server.cpu_times()
    cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / wall * 100
    ok = tally.ok()
    firsts = [r.first_s * 1000 for r in ok if r.first_s is not None]
    totals = [r.total_s * 1000 for r in ok]
    shed = sum(r.status == 503 for r in tally.results)
    from collections import Counter

    other = Counter(r.status for r in tally.results if not r.ok and r.status != 503)
    other = ", ".join(f"{n}x {STATUS.get(k, k)}" for k, n in sorted(other.items())) or "0"
    rate = len(ok) / max(1, len(tally.results)) * 100
    buckets1 = await ttft_buckets(c)
    speeds = [r.words_per_s for r in ok if r.words_per_s is not None]
    return (
        f"| {users} | {rate:.1f}% | {shed} | {other} | {bucket_quantile(buckets0, buckets1, 0.5)} | "
        f"{bucket_quantile(buckets0, buckets1, 0.99)} | {pct(firsts, 50):.0f} | {pct(firsts, 99):.0f} | "
        f"{pct(totals, 50):.0f} | {pct(speeds, 50):.1f} | {len(ok) / wall:.2f} | {cpu:.0f}% | {max(rss) / 2**20:.0f} |"
    ), tally


def reuse_table(results: list[Result]) -> str:
    """The share of each beat's prompt the runtime reused, by the beat's place in its session."""
    by_turn: dict[int, list[float]] = {}
    for r in results:
        if r.ok and r.turn is not None and r.reuse is not None:
            by_turn.setdefault(r.turn, []).append(r.reuse)
    rows = [f"| {t} | {len(v)} | {100 * pct(v, 50):.0f}% | {100 * min(v):.0f}% |" for t, v in sorted(by_turn.items())]
    return "\n".join(["| beat of the session | beats | prompt reused P50 | min |", "|---|---|---|---|", *rows])


async def openai_turns(base_url: str, clients: int, turns: int) -> tuple[list[float], list[float]]:
    """Each client a chat of `turns` turns through the official `openai` client, streamed: the times to
    the first content chunk and to the last, in ms."""
    import openai

    first, whole = [], []
    api = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="load-test", max_retries=0, timeout=600)

    async def chat(k: int) -> None:
        messages = [{"role": "system", "content": PREMISE}]
        for i in range(turns):
            messages.append({"role": "user", "content": f"I walk on, step {i} of client {k}."})
            t0, seen, text = time.perf_counter(), None, ""
            try:
                async for chunk in await api.chat.completions.create(model="", messages=messages, stream=True):
                    delta = chunk.choices[0].delta.content if chunk.choices else None
                    if delta and seen is None:
                        seen = time.perf_counter() - t0
                    text += delta or ""
            except openai.APIError:  # shed (503) or failed: not counted, as a native turn that fails is not
                return
            first.append(1000 * (seen if seen is not None else time.perf_counter() - t0))
            whole.append(1000 * (time.perf_counter() - t0))
            messages.append({"role": "assistant", "content": text})

    await asyncio.gather(*(chat(k) for k in range(clients)))
    await api.close()
    return first, whole


async def native_turns(c: httpx.AsyncClient, clients: int, turns: int) -> tuple[list[float], list[float]]:
    """The same through the native session route: a session a client, `turns` streamed turns."""
    results: list[Result] = []

    async def play(k: int) -> None:
        r = await c.post("/v1/sessions", json={"premise": PREMISE})
        sid = r.json()["id"]
        for i in range(turns):
            results.append(await beat(c, sid, f"I walk on, step {i} of client {k}."))

    await asyncio.gather(*(play(k) for k in range(clients)))
    ok = [r for r in results if r.ok]
    return [1000 * (r.first_s or r.total_s) for r in ok], [1000 * r.total_s for r in ok]


async def chat_sessions(c: httpx.AsyncClient) -> dict[str, float]:
    """The server's count of OpenAI chat turns by their live session: found, or made (new, or rebuilt)."""
    out = {}
    for line in (await c.get("/metrics")).text.splitlines():
        if line.startswith("ee_chat_sessions_total{"):
            out[line.split('how="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
    return out


async def openai_table(
    c: httpx.AsyncClient, base_url: str, client_counts: list[int], turns: int, pause_s: float
) -> list[str]:
    """A row per client count; between the routes a pause, so that one route's beat summaries (background
    work of the runtime) are done before the other is timed."""
    rows = []
    for n in client_counts:
        await native_turns(c, n, 1)  # a turn on each route first, not counted: the first route run pays
        await openai_turns(base_url, n, 1)  # for whatever warms up (measured: 0.7 s more at 8 clients)
        await asyncio.sleep(pause_s)
        t0 = time.perf_counter()
        nf, nw = await native_turns(c, n, turns)
        await asyncio.sleep(pause_s)
        t1, before = time.perf_counter(), await chat_sessions(c)
        of, ow = await openai_turns(base_url, n, turns)
        rate = (len(nw) / (t1 - t0 - pause_s), len(ow) / (time.perf_counter() - t1))
        after = await chat_sessions(c)
        found, made = (after.get(k, 0) - before.get(k, 0) for k in ("found", "made"))
        first, whole = (pct(nf, 50), pct(of, 50)), (pct(nw, 50), pct(ow, 50))
        rows.append(
            f"| {n} | {len(nw)} / {len(ow)} | {first[0]:.1f} | {first[1]:.1f} | {first[1] - first[0]:+.1f} | "
            f"{whole[0]:.1f} | {whole[1]:.1f} | {whole[1] - whole[0]:+.1f} | {rate[0]:.2f} / {rate[1]:.2f} | "
            f"{found:.0f} / {made:.0f} |"
        )
    return rows


async def run_client(args, server_pid: int) -> None:
    server = psutil.Process(server_pid)
    limits = httpx.Limits(max_connections=5000, max_keepalive_connections=5000)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{args.port}", timeout=600, limits=limits) as c:
        print(
            f"\nserver: --lm {args.lm}"
            + (
                f" (step {args.step_ms} ms + {args.per_seq_ms} ms/sequence, batch {args.max_batch})"
                if args.lm == "simulated"
                else ""
            )
            + f", {args.slots} generation slots, queue {args.queue}, max wait {args.max_wait_s:g} s, "
            f"candidates {args.candidates}"
        )
        if not args.skip_latency:
            print("\n| request | mode | ok/sent | P50 ms | P95 ms | P99 ms | per s |\n|---|---|---|---|---|---|---|")
            for row in await latency_tables(c, args.requests, args.concurrency):
                print(row, flush=True)
        if args.users:
            print(
                f"\nsimulated users, {args.reading_s:.0f} s reading time, {args.duration_s:.0f} s per row; TTFT = "
                "server's first LM token (histogram bucket); first text = first streamed sentence at the client\n"
            )
            print(
                "| users | success | shed (503) | other failures | TTFT P50 ms | TTFT P99 ms | first text P50 ms | "
                "P99 ms | beat P50 ms | words/s P50 | beats/s | server CPU | server RSS MiB |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
            )
            beats: list[Result] = []
            for u in args.users:
                row, tally = await users_row(c, u, args.reading_s, args.duration_s, server)
                beats += tally.results
                print(row, flush=True)
            print("\nprefix reuse by turn (every row's beats; 0% on a session's first beat)\n")
            print(reuse_table(beats), flush=True)
        if args.openai:
            print(
                "\nthe OpenAI-compatible chat route (official openai client, streamed) beside the native session "
                f"route, {args.openai_turns} turns a client; ms, P50\n\n"
                "| clients | beats native / openai | first text native | openai | difference | whole beat native | "
                "openai | difference | beats/s native / openai | chat sessions found / made |\n"
                "|---|---|---|---|---|---|---|---|---|---|"
            )
            base = f"http://127.0.0.1:{args.port}"
            for row in await openai_table(c, base, args.openai, args.openai_turns, args.openai_pause_s):
                print(row, flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lm", choices=["simulated", "embedded"], default="simulated")
    p.add_argument(
        "--step-ms", type=float, default=25.0, help="simulated decode step, fixed part (builtin runtime: ~25)"
    )
    p.add_argument("--per-seq-ms", type=float, default=4.0, help="simulated decode step, per sequence (builtin: ~4)")
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--slots", type=int, default=16, help="EE_GENERATION_SLOTS")
    p.add_argument("--queue", type=int, default=64, help="EE_GENERATION_QUEUE")
    p.add_argument("--max-wait-s", type=float, default=10.0, help="EE_GENERATION_MAX_WAIT_S")
    p.add_argument("--candidates", type=int, default=2)
    p.add_argument("--requests", type=int, default=16, help="requests per latency row")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--users", type=lambda s: [int(x) for x in s.split(",") if x], default=[10, 50, 100, 500, 1000])
    p.add_argument("--reading-s", type=float, default=20.0)
    p.add_argument("--duration-s", type=float, default=60.0)
    p.add_argument("--skip-latency", action="store_true")
    p.add_argument(
        "--openai", type=lambda s: [int(x) for x in s.split(",") if x], default=[], help="client counts, e.g. 1,8,32"
    )
    p.add_argument("--openai-turns", type=int, default=4, help="turns a client plays on each route")
    p.add_argument("--openai-pause-s", type=float, default=20.0, help="idle time before each route is timed")
    p.add_argument("--redis-url", default=None)
    p.add_argument("--port", type=int, default=8777)
    p.add_argument("--db", default=None)
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        return serve(args)
    import tempfile

    tmp = tempfile.mkdtemp(prefix="ee-load-")
    cmd = [sys.executable, __file__, "--serve", "--db", f"{tmp}/load.db"] + [a for a in sys.argv[1:] if a != "--serve"]
    proc = subprocess.Popen(cmd, env=os.environ.copy())
    try:
        deadline = time.time() + 300
        while True:
            if proc.poll() is not None:
                sys.exit(f"the server exited with {proc.returncode}")
            try:
                if httpx.get(f"http://127.0.0.1:{args.port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                sys.exit("the server was not ready in 300 s")
            time.sleep(0.5)
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
        asyncio.run(run_client(args, proc.pid))
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
        print(
            json.dumps(
                {
                    "server_metrics_sample": [
                        line
                        for line in httpx.get(f"http://127.0.0.1:{args.port}/metrics").text.splitlines()
                        if line.startswith("ee_load_shed_total")
                    ]
                }
            )
        )
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    main()
