#!/usr/bin/env python
"""Fault table (issue 16): what users see when a part fails, how fast the server notices, how fast it
recovers, and whether anything acknowledged is lost.

A server runs in its own process against a Redis and a PostgreSQL of its own, started here from this
machine's binaries (`redis-server`, `initdb`/`pg_ctl`) on spare ports and removed afterwards, so the
shared services are never touched. Its language model is the simulated batched decoder of
benchmarks/load.py (the service is measured, not the model) and its emotion model a constant; both
read fault switches from a folder, so a fault can be turned on inside the running server. Steady load
throughout, loopback only: `--players` players each play a beat, read for `--reading-s`, play the next;
a job (a story long enough to run in the background) is submitted every `--job-every-s`.

Faults, one after another, each held for `--hold-s`: Redis stopped then started; PostgreSQL stopped
then started; the server killed with SIGKILL while a turn and a job are in flight, then started again;
the model raising in the middle of a batch; one agent (the technical check) hanging; and, on a second
server whose SQLite store is on a small tmpfs, the disk filling up then freed.

For each: detection = from the fault to the first sign the server shows of it (its /readyz naming the
part, /healthz not answering, or its error or agent-failure counters rising), polled every 100 ms;
recovery = from the end of the fault (for the kill: the restart) until the server serves again: the
later of the first /readyz naming nothing and the start of the first request begun after the fault
that succeeded (a session created every 100 ms by a prober, or a turn; for the model: a turn);
requests failed and their status codes, from the fault to recovery.
At the end every acknowledged beat is looked up in the store and every accepted job waited for:
lost = acknowledged beats missing + accepted jobs that never finished.

    .venv/bin/python benchmarks/faults.py            # about 3 minutes; needs root or a user that may run initdb
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import glob
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
PREMISE = "A lighthouse keeper finds a letter from her lost brother."
POLL_S = 0.1


# ---- the server side: the app with switchable faults ---------------------------------------------


def serve(args) -> None:
    import uvicorn

    sys.path.insert(0, str(HERE))
    from emotional_engine.agents import technical as technical_agent
    from emotional_engine.config import Settings
    from emotional_engine.service import create_app
    from load import ConstantEmotion, SimulatedDecoder

    switches = Path(args.switches)

    class FaultyDecoder(SimulatedDecoder):
        """Raises in every sequence of the running batch at the step after `model_raises` appears."""

        async def stream(self, prompt, params, *, kv_key=None, processors=()):
            async for piece in super().stream(prompt, params, kv_key=kv_key, processors=processors):
                if (switches / "model_raises").exists():
                    raise RuntimeError("simulated fault: the model raised in the middle of a batch")
                yield piece

    check_text = technical_agent.check_text

    def hanging_check(*a, **kw):  # the technical agent hangs while `agent_hangs` exists
        while (switches / "agent_hangs").exists():
            time.sleep(0.05)
        return check_text(*a, **kw)

    technical_agent.check_text = hanging_check
    settings = Settings(
        database_url=args.database_url,
        redis_url=args.redis_url,
        auth_enabled=False,
        rate_limit_requests_per_min=10**9,
        rate_limit_tokens_per_min=10**12,
        max_concurrent_per_key=10**6,
        max_jobs_per_key=10**6,
        max_sessions_per_key=10**6,
        job_words_threshold=100,
        job_lease_s=args.lease_s,
        agent_timeout_s=args.agent_timeout_s,
    )
    app = create_app(
        settings,
        generator=FaultyDecoder(step_ms=25, per_seq_ms=4, max_batch=16),
        emotion=ConstantEmotion(),
        candidates=1,
        check_safety=False,
    )
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


# ---- the parts: Redis, PostgreSQL, the server, a tmpfs ------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout_s: float, what: str) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            if check():
                return
        except (OSError, httpx.HTTPError, subprocess.SubprocessError):
            pass
        time.sleep(0.05)
    raise SystemExit(f"{what} did not come up within {timeout_s:.0f} s")


class Redis:
    def __init__(self, workdir: Path):
        self.port, self.dir, self.proc = free_port(), workdir / "redis", None
        self.dir.mkdir()
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", str(self.dir)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        wait_until(lambda: self._cli("ping").stdout.strip() == "PONG", 10, "redis-server")

    def stop(self) -> None:
        self._cli("shutdown", "nosave")
        self.proc.wait(10)

    def _cli(self, *words):
        return subprocess.run(["redis-cli", "-p", str(self.port), *words], capture_output=True, text=True, timeout=5)


class Postgres:
    """A throwaway cluster (initdb) on a spare port; as the `postgres` user when run as root."""

    def __init__(self, workdir: Path):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        self.bin = Path(bins[-1]) if bins else Path(shutil.which("pg_ctl")).parent
        self.port, self.dir = free_port(), workdir / "pg"
        self.dir.mkdir()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.dir, "postgres")
            os.chmod(workdir, 0o755)
        self._run("initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres")
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *a: str) -> None:
        subprocess.run([*self.as_user, str(self.bin / tool), *a], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-o", opts, "-l", str(self.dir / "log"), "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")


class Server:
    def __init__(self, workdir: Path, database_url: str, redis_url: str | None, args):
        self.port, self.switches = free_port(), workdir / f"switches-{id(self)}"
        self.switches.mkdir()
        self.cmd = [sys.executable, __file__, "--serve", "--port", str(self.port), "--switches", str(self.switches)]
        self.cmd += ["--database-url", database_url, "--lease-s", str(args.lease_s)]
        self.cmd += ["--agent-timeout-s", str(args.agent_timeout_s)] + (["--redis-url", redis_url] if redis_url else [])
        self.url, self.proc = f"http://127.0.0.1:{self.port}", None

    def start(self) -> None:
        t0 = time.time()
        self.proc = subprocess.Popen(self.cmd)

        def ready():
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited with {self.proc.returncode}")
            return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200

        wait_until(ready, 120, "the server")
        self.start_s = time.time() - t0  # process start to /readyz 200: imports, models, migrations

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)

    def switch(self, name: str, on: bool) -> None:
        (self.switches / name).touch() if on else (self.switches / name).unlink(missing_ok=True)


class Tmpfs:
    """A small tmpfs for the SQLite store, and a file that fills it."""

    def __init__(self, workdir: Path, size_mb: int):
        self.dir = workdir / "tmpfs"
        self.dir.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(self.dir)], check=True)
        self.filler = self.dir / "filler"

    def fill(self) -> None:
        with open(self.filler, "wb") as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)
                f.flush()

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.dir)], check=False)


# ---- the client side: steady load, a watcher, the bookkeeping -----------------------------------


@dataclass
class Request:
    kind: str
    started: float
    ended: float
    status: int  # 0: no HTTP answer (connection refused or reset)


@dataclass
class Load:
    requests: list[Request] = field(default_factory=list)
    beats: list[tuple[str, str]] = field(default_factory=list)  # acknowledged (session id, beat text)
    jobs: list[str] = field(default_factory=list)  # accepted job ids
    turns_in_flight: int = 0


async def timed(load: Load, kind: str, request):
    """Await `request` (a client call not yet started), recording when it ran and how it ended."""
    t0 = time.time()
    try:
        r = await request
    except httpx.HTTPError:
        load.requests.append(Request(kind, t0, time.time(), 0))
        return None
    load.requests.append(Request(kind, t0, time.time(), r.status_code))
    return r


async def player(c: httpx.AsyncClient, load: Load, reading_s: float, stop: asyncio.Event) -> None:
    sid = None
    while not stop.is_set():
        if sid is None:
            r = await timed(load, "session", c.post("/v1/sessions", json={"premise": PREMISE}))
            sid = r.json()["id"] if r is not None and r.status_code == 201 else None
        else:
            load.turns_in_flight += 1
            try:
                r = await timed(load, "turn", c.post(f"/v1/sessions/{sid}/turns", json={"action": "I wait."}))
            finally:
                load.turns_in_flight -= 1
            if r is not None and r.status_code == 200:
                load.beats.append((sid, r.json()["text"]))
        await asyncio.sleep(random.uniform(0.5, 1.5) * reading_s)  # players out of step with each other


async def prober(c: httpx.AsyncClient, load: Load, stop: asyncio.Event) -> None:
    """A session created every POLL_S: a cheap request that needs the database to write, so that
    recovery is seen to the tenth of a second rather than when some player's next beat happens to start."""
    while not stop.is_set():
        await timed(load, "probe", c.post("/v1/sessions", json={"premise": PREMISE}))
        await asyncio.sleep(POLL_S)


async def submitter(c: httpx.AsyncClient, load: Load, every_s: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        r = await timed(load, "job", c.post("/v1/jobs", json={"premise": PREMISE, "words": 200}))
        if r is not None and r.status_code == 202:
            load.jobs.append(r.json()["id"])
        await asyncio.sleep(every_s)


@dataclass
class Sample:
    t: float
    alive: bool
    ready: bool = False
    degraded: tuple[str, ...] = ()
    counters: dict = field(default_factory=dict)


COUNTER = re.compile(r"^(ee_errors_total|ee_agent_failures_total|ee_http_requests_total)\{([^}]*)\} (\S+)$", re.M)


async def watcher(server_url: callable, samples: list[Sample], stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(timeout=1) as c:
        while not stop.is_set():
            t = time.time()
            try:
                r = await c.get(f"{server_url()}/readyz")
                m = await c.get(f"{server_url()}/metrics")
                counters = collections.Counter()
                for name, labels, value in COUNTER.findall(m.text):
                    if name == "ee_http_requests_total":
                        if 'status="5' in labels and 'status="503"' not in labels:
                            counters["http_5xx"] += float(value)
                    else:
                        counters[name] += float(value)
                body = r.json()
                samples.append(Sample(t, True, body["status"] == "ready", tuple(body["degraded"]), dict(counters)))
            except (httpx.HTTPError, ValueError):
                samples.append(Sample(t, False))
            await asyncio.sleep(max(0.0, POLL_S - (time.time() - t)))


def detected(samples: list[Sample], since: float, sign) -> float | None:
    before = [s for s in samples if s.t < since and s.alive]
    base = before[-1].counters if before else {}
    for s in samples:
        if s.t >= since and sign(s, base):
            return s.t - since
    return None


def part_named(part: str):
    return lambda s, base: s.alive and any(d.startswith(part) for d in s.degraded)


def counter_rose(name: str):
    return lambda s, base: s.alive and s.counters.get(name, 0) > base.get(name, 0)


def not_alive(s, base) -> bool:
    return not s.alive


# ---- the scenarios ------------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    begin: callable  # starts the fault
    end: callable  # ends it
    sign: callable  # (sample, counters before) -> whether the server shows the fault
    served_by: tuple[str, ...] = ("probe", "turn")  # requests that show it serves again (the model: turns)
    hold_s: float | None = None  # how long the fault lasts, if not --hold-s


async def run_scenario(sc: Scenario, server: Server, load: Load, samples: list[Sample], hold_s: float) -> dict:
    t_fault = time.time()
    await asyncio.to_thread(sc.begin)
    await asyncio.sleep(sc.hold_s or hold_s)
    t_end = time.time()
    await asyncio.to_thread(sc.end)
    recovered = None
    deadline = time.time() + 60
    while recovered is None and time.time() < deadline:
        await asyncio.sleep(POLL_S)
        ok = [r.started for r in load.requests if r.kind in sc.served_by and r.started >= t_end and r.status < 300]
        clean = [s.t for s in samples if s.t >= t_end and s.ready]
        if ok and clean:  # serving again: a request begun then succeeded, and /readyz names nothing
            recovered = max(min(ok), min(clean))
    t_rec = recovered or time.time()
    first_ok = min(ok, default=None)
    first_ready = min(clean, default=None)
    window = [r for r in load.requests if r.ended >= t_fault and r.started <= t_rec]
    failed = [r for r in window if not 200 <= r.status < 300]
    codes = collections.Counter(r.status for r in window)
    fivehundreds = sum(n for code, n in codes.items() if code >= 500 and code != 503)
    return {
        "name": sc.name,
        "detect": detected(samples, t_fault, sc.sign),
        "recover": None if recovered is None else recovered - t_end,
        "failed": len(failed),
        "sent": len(window),
        "codes": " ".join(f"{'none' if k == 0 else k}:{v}" for k, v in sorted(codes.items())),
        "500s": fivehundreds,
        # the two parts of recovery: /readyz clean again, a turn begun after the fault that succeeded
        "ready_after": None if first_ready is None else round(first_ready - t_end, 2),
        "served_after": None if first_ok is None else round(first_ok - t_end, 2),
    }


async def lost_work(url: str, load: Load, wait_s: float) -> tuple[int, int, int, collections.Counter]:
    """(acknowledged beats missing from the store, accepted jobs unfinished after `wait_s`, jobs, job states)."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as c:
        stored: dict[str, set[str]] = {}
        for sid in {sid for sid, _ in load.beats}:
            r = await c.get(f"/v1/sessions/{sid}")
            stored[sid] = {b["text"] for b in r.json()["beats"]} if r.status_code == 200 else set()
        missing = sum(text not in stored[sid] for sid, text in load.beats)
        deadline, states = time.time() + wait_s, {}
        while time.time() < deadline:
            for jid in load.jobs:
                if states.get(jid) not in ("done", "failed", "cancelled"):
                    r = await c.get(f"/v1/jobs/{jid}")
                    states[jid] = r.json()["status"] if r.status_code == 200 else "missing"
            if all(states[j] in ("done", "failed", "cancelled") for j in load.jobs):
                break
            await asyncio.sleep(0.5)
        unfinished = sum(states.get(j) not in ("done", "failed", "cancelled") for j in load.jobs)
        return missing, unfinished, len(load.jobs), collections.Counter(states.values())


async def mid_turn_and_job(server: Server, load: Load) -> None:
    """Wait until a turn is in flight and a job is running, so the kill lands in the middle of both."""
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as c:
        for _ in range(400):
            running = False
            for jid in load.jobs[-4:]:
                r = await c.get(f"/v1/jobs/{jid}")
                running |= r.status_code == 200 and r.json()["status"] == "running"
            if running and load.turns_in_flight:
                return
            await asyncio.sleep(0.02)


async def with_load(server: Server, args, scenarios_for) -> tuple[list[dict], tuple]:
    load, samples, stop = Load(), [], asyncio.Event()
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as c:
        tasks = [asyncio.create_task(player(c, load, args.reading_s, stop)) for _ in range(args.players)]
        tasks.append(asyncio.create_task(submitter(c, load, args.job_every_s, stop)))
        tasks.append(asyncio.create_task(prober(c, load, stop)))
        tasks.append(asyncio.create_task(watcher(lambda: server.url, samples, stop)))
        await asyncio.sleep(args.warm_s)
        rows = []
        for sc, before in scenarios_for(load):
            if before is not None:
                await before()
            rows.append(await run_scenario(sc, server, load, samples, args.hold_s))
            print(f"  {rows[-1]}", flush=True)
            await asyncio.sleep(args.settle_s)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    return rows, await lost_work(server.url, load, args.job_wait_s)


def fmt(x: float | None) -> str:
    return "not seen" if x is None else f"{x:.2f}"


def print_table(rows: list[dict], lost: dict[str, tuple]) -> None:
    print("\n| fault | detected after s | recovered after s | failed / requests | status codes | 500s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['name']} | {fmt(r['detect'])} | {fmt(r['recover'])} | {r['failed']} / {r['sent']} | "
            f"{r['codes']} | {r['500s']} |"
        )
    print("\n| server | acknowledged beats lost | accepted jobs unfinished | jobs accepted | job states |")
    print("|---|---|---|---|---|")
    for name, (missing, unfinished, jobs, states) in lost.items():
        print(f"| {name} | {missing} | {unfinished} | {jobs} | {dict(states)} |")


async def main(args) -> None:
    work = Path(tempfile.mkdtemp(prefix="ee-faults-"))
    redis, pg = Redis(work), Postgres(work)
    parts = [redis, pg]
    tmpfs = None
    try:
        redis.start()
        pg.start()
        server = Server(work, pg.url, redis.url, args)
        server.start()
        print(
            f"server on PostgreSQL :{pg.port} and Redis :{redis.port}; {args.players} players, "
            f"a job every {args.job_every_s:g} s, each fault held {args.hold_s:g} s, lease {args.lease_s:g} s"
        )

        def restart():
            server.kill()
            server.start()

        def scenarios(load):
            return [
                (Scenario("Redis stopped, then started", redis.stop, redis.start, part_named("redis")), None),
                (Scenario("PostgreSQL stopped, then started", pg.stop, pg.start, part_named("database")), None),
                (
                    Scenario("server SIGKILLed mid-turn and mid-job, restarted", server.kill, server.start, not_alive),
                    lambda: mid_turn_and_job(server, load),
                ),
                (
                    Scenario(
                        "model raises mid-batch",
                        lambda: server.switch("model_raises", True),
                        lambda: server.switch("model_raises", False),
                        counter_rose("ee_errors_total"),
                        served_by=("turn",),
                    ),
                    None,
                ),
                (
                    Scenario(
                        f"an agent hangs (timeout {args.agent_timeout_s:g} s)",
                        lambda: server.switch("agent_hangs", True),
                        lambda: server.switch("agent_hangs", False),
                        counter_rose("ee_agent_failures_total"),
                        hold_s=10.0,  # the technical agent is called as a job's scene ends: wait for one
                    ),
                    None,
                ),
            ]

        rows, lost_pg = await with_load(server, args, scenarios)
        restart_s = server.start_s
        server.stop()
        lost = {"PostgreSQL + Redis": lost_pg}

        tmpfs = Tmpfs(work, args.tmpfs_mb)
        disk_server = Server(work, f"sqlite:///{tmpfs.dir}/store.db", None, args)
        disk_server.start()
        disk = Scenario("disk full (SQLite on tmpfs)", tmpfs.fill, tmpfs.free, part_named("database"))
        more, lost_disk = await with_load(disk_server, args, lambda load: [(disk, None)])
        disk_server.stop()
        lost["SQLite on tmpfs"] = lost_disk
        print_table(rows + more, lost)
        print(f"\nthe restarted server took {restart_s:.2f} s from process start to /readyz 200")
    finally:
        for part in parts:
            with contextlib.suppress(Exception):
                part.stop()
        if tmpfs is not None:
            tmpfs.unmount()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--players", type=int, default=8)
    p.add_argument("--reading-s", type=float, default=0.5)
    p.add_argument("--job-every-s", type=float, default=2.0)
    p.add_argument("--hold-s", type=float, default=3.0, help="how long each fault lasts")
    p.add_argument("--warm-s", type=float, default=5.0)
    p.add_argument("--settle-s", type=float, default=3.0, help="pause between faults")
    p.add_argument("--job-wait-s", type=float, default=60.0, help="how long the accepted jobs get to finish")
    p.add_argument("--lease-s", type=float, default=3.0, help="EE_JOB_LEASE_S of the server")
    p.add_argument("--agent-timeout-s", type=float, default=1.0, help="EE_AGENT_TIMEOUT_S of the server")
    p.add_argument("--tmpfs-mb", type=int, default=8)
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--switches", help=argparse.SUPPRESS)
    p.add_argument("--database-url", help=argparse.SUPPRESS)
    p.add_argument("--redis-url", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(args)
    else:
        asyncio.run(main(args))
