"""Scale-out benchmark of the service on Ray Serve (service/ray_serve.py), on a local Ray on this machine.

Prints, in one run:
1. replicas: sessions played by `--clients-per-replica` clients per replica (streamed turns, no reading
   time: the replicas stay busy) at 1, 2 and 3 replicas with the simulated decoder (benchmarks/load.py's
   SimulatedDecoder, timed like the builtin runtime's batched decode), and at 1 and 2 replicas with the
   embedded model. Per row: success, P50/P99 time to the first text, turns/s, scaling efficiency
   (turns/s over n times the 1-replica row's), the CPU each replica used (cores busy over the row) and
   its resident memory, and the warm share: the turns that reached the replica holding their session
   from its previous turn (read from the `x-ee-replica` header). A row with Ray's default router (no
   session affinity) is the baseline for that share.
2. the autoscaler: from 1 replica under light load, a load step to `--step-clients` clients; the
   time until a second replica serves, until the load is spread; then the load stops and the time until
   the replicas are given back.

Redis and PostgreSQL (a schema of its own, dropped afterwards) are the shared state, as in production.

    python benchmarks/scale.py                          # all of it, about 15 minutes on 2 cores
    python benchmarks/scale.py --skip-embedded --duration-s 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx
import psutil
import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from load import PREMISE, ConstantEmotion, SimulatedDecoder, pct  # noqa: E402

APP = "scale"
DEFAULT_ROUTER = "ray.serve._private.request_router.pow_2_router.PowerOfTwoChoicesRequestRouter"


# ---- the apps the replicas run (imported by the replica processes: benchmarks/ is on their path) ----


def _settings(**kw):
    from emotional_engine.config import Settings

    return Settings(
        _env_file=None,
        auth_enabled=False,
        rate_limit_requests_per_min=10**9,
        rate_limit_tokens_per_min=10**12,
        max_concurrent_per_key=10**6,
        max_sessions_per_key=10**6,
        session_idle_ttl_s=3600,
        **kw,
    )


def simulated_app(step_ms: float, per_seq_ms: float, max_batch: int, **settings):
    from emotional_engine.service import create_app

    return create_app(
        _settings(**settings),
        generator=SimulatedDecoder(step_ms, per_seq_ms, max_batch),
        emotion=ConstantEmotion(),
        check_safety=False,
        candidates=2,
    )


def embedded_app(**settings):
    from emotional_engine.service import create_app

    return create_app(_settings(**settings), candidates=2)


# ---- the load --------------------------------------------------------------------------------------


@dataclass
class Turn:
    ok: bool
    first_s: float | None
    total_s: float
    session: str
    replica: str | None
    at: float  # when it ended (perf_counter)
    failure: str | None = None  # what a failed turn got: its HTTP status, "error event", "cut", "transport"


@dataclass
class Load:
    turns: list[Turn] = field(default_factory=list)

    def ok(self) -> list[Turn]:
        return [t for t in self.turns if t.ok]

    def failures(self) -> dict[str, int]:
        return dict(Counter(t.failure for t in self.turns if not t.ok))

    def warm_share(self) -> float:
        """Of the turns after a session's first, the share served where its previous turn was."""
        last, same, follow = {}, 0, 0
        for t in sorted(self.ok(), key=lambda t: t.at):
            if t.session in last:
                follow += 1
                same += last[t.session] == t.replica
            last[t.session] = t.replica
        return same / follow if follow else float("nan")


async def turn(c: httpx.AsyncClient, sid: str, action: str) -> Turn:
    t0 = time.perf_counter()
    first, replica = None, None
    try:
        async with c.stream(
            "POST", f"/v1/sessions/{sid}/turns", json={"action": action}, headers={"accept": "text/event-stream"}
        ) as r:
            replica = r.headers.get("x-ee-replica")
            if r.status_code != 200:
                await r.aread()
                return Turn(
                    False, None, time.perf_counter() - t0, sid, replica, time.perf_counter(), str(r.status_code)
                )
            event, done, failure = None, False, "cut"
            async for line in r.aiter_lines():
                if line.startswith("event: "):
                    event = line[len("event: ") :]
                    if event == "sentence" and first is None:
                        first = time.perf_counter() - t0
                    done = done or event == "beat"
                    if event == "error":
                        failure = "error event"
                        break
        failure = None if done else failure
        return Turn(done, first, time.perf_counter() - t0, sid, replica, time.perf_counter(), failure)
    except httpx.HTTPError:
        return Turn(False, first, time.perf_counter() - t0, sid, replica, time.perf_counter(), "transport")


async def play(c: httpx.AsyncClient, load: Load, clients: int, until, think_s: float = 0.0) -> None:
    """`clients` players, each a session of turns, `think_s` apart on average (0: back to back), until
    `until()` is true."""

    async def player(k: int) -> None:
        await asyncio.sleep(random.uniform(0, 0.5))
        r = await c.post("/v1/sessions", json={"premise": PREMISE, "culture": "en-GB"})
        if r.status_code != 201:
            load.turns.append(
                Turn(False, None, 0.0, f"none-{k}", None, time.perf_counter(), f"{r.status_code} (new session)")
            )
            return
        sid, i = r.json()["id"], 0
        while not until():
            load.turns.append(await turn(c, sid, f"I look around, moment {i}."))
            i += 1
            if think_s:
                await asyncio.sleep(random.uniform(0.5, 1.5) * think_s)

    await asyncio.gather(*(player(k) for k in range(clients)))


# ---- Ray ---------------------------------------------------------------------------------------------


def replica_processes() -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if f"ServeReplica:{APP}:EngineReplica" in cmd:
            out.append(p)
    return out


def running_replicas() -> int:
    from ray import serve

    status = serve.status().applications.get(APP)
    if status is None:
        return 0
    return status.deployments["EngineReplica"].replica_states.get("RUNNING", 0)


def deploy(app: str, app_kwargs: dict, replica: dict, port: int) -> str:
    from ray import serve

    from emotional_engine.service.ray_serve import build

    serve.run(build({"app": app, "app_kwargs": app_kwargs, "replica": replica}), name=APP, route_prefix="/")
    return f"http://127.0.0.1:{port}"


async def replicas_row(label: str, base: str, n: int, clients: int, duration_s: float, think_s: float = 0.0) -> dict:
    load = Load()
    procs = replica_processes()
    cpu0 = {p.pid: sum(p.cpu_times()[:2]) for p in procs}
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=httpx.Limits(max_connections=1000)) as c:
        t0 = time.perf_counter()
        stop = t0 + duration_s
        await play(c, load, clients, lambda: time.perf_counter() > stop, think_s)
        wall = time.perf_counter() - t0
    cores = [(sum(p.cpu_times()[:2]) - cpu0[p.pid]) / wall for p in procs if p.is_running()]
    rss = [p.memory_info().rss / 2**20 for p in procs if p.is_running()]
    ok = load.ok()
    first = [t.first_s * 1000 for t in ok if t.first_s is not None]
    return {
        "row": label,
        "replicas": n,
        "clients": clients,
        "turns": len(load.turns),
        "ok": len(ok),
        "first_p50_ms": pct(first, 50),
        "first_p99_ms": pct(first, 99),
        "turns_per_s": len(ok) / wall,
        "replica_cores": [round(x, 2) for x in cores],
        "replica_rss_mb": [round(x) for x in rss],
        "warm_share": load.warm_share(),
        "failures": load.failures(),
        "think_s": think_s,
    }


async def autoscale_run(base: str, light: int, step: int, hold_s: float, poll_s: float = 0.5) -> dict:
    """Light load on one replica, then a step; times from the step until Ray runs a second replica,
    until the second one serves turns, and from the end of the load until one replica is left."""
    load, marks = Load(), {}
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=httpx.Limits(max_connections=1000)) as c:
        phase = {"stop": False}
        light_task = asyncio.create_task(play(c, load, light, lambda: phase["stop"]))
        await asyncio.sleep(10)
        first_replica = next((t.replica for t in load.ok()), None)
        t_step = time.perf_counter()
        step_load = Load()
        step_task = asyncio.create_task(play(c, step_load, step, lambda: phase["stop"]))
        while time.perf_counter() - t_step < hold_s:
            n = await asyncio.to_thread(running_replicas)
            if n >= 2 and "added" not in marks:
                marks["added"] = time.perf_counter() - t_step
            elsewhere = [t.at for t in load.ok() + step_load.ok() if t.at > t_step and t.replica != first_replica]
            if elsewhere and "serving" not in marks:
                marks["serving"] = min(elsewhere) - t_step
            marks["peak"] = max(marks.get("peak", 1), n)
            await asyncio.sleep(poll_s)
        phase["stop"] = True
        await asyncio.gather(light_task, step_task)
        t_end = time.perf_counter()
    while (n := await asyncio.to_thread(running_replicas)) > 1 and time.perf_counter() - t_end < 600:
        await asyncio.sleep(poll_s)
    marks["back_to_one"] = time.perf_counter() - t_end if n <= 1 else float("nan")
    ok = step_load.ok()
    first = [t.first_s * 1000 for t in ok if t.first_s is not None]
    return marks | {
        "step_turns": len(step_load.turns),
        "step_ok": len(ok),
        "step_first_p50_ms": pct(first, 50),
        "step_first_p99_ms": pct(first, 99),
        "step_failures": step_load.failures(),
        "warm_share": step_load.warm_share(),
    }


# ---- the run -----------------------------------------------------------------------------------------


def fresh_schema(admin: str) -> tuple[str, str]:
    schema = f"ee_scale_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return schema, f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options={quote(f'-csearch_path={schema}')}"


def print_tables(rows: list[dict], autoscale: dict | None) -> None:
    print(
        "\n| decoder | row | replicas | clients | ok | first text P50 / P99 ms | turns/s | efficiency | "
        "cores busy per replica | RSS MB per replica | warm share |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    base = {}
    for r in rows:
        decoder = r["row"].split(",")[0]
        if r["replicas"] == 1:
            base[decoder] = r["turns_per_s"]
        # scaling efficiency: against n times the one-replica row of the same decoder and load shape
        eff = r["turns_per_s"] / (r["replicas"] * base[decoder]) if base.get(decoder) and not r["think_s"] else None
        eff = "-" if eff is None else f"{eff:.2f}"
        print(
            f"| {decoder} | {r['row']} | {r['replicas']} | {r['clients']} | {r['ok']}/{r['turns']} | "
            f"{r['first_p50_ms']:.0f} / {r['first_p99_ms']:.0f} | {r['turns_per_s']:.2f} | {eff} | "
            f"{' + '.join(f'{x:.2f}' for x in r['replica_cores'])} | {' + '.join(map(str, r['replica_rss_mb']))} | "
            f"{r['warm_share']:.2f} |"
        )
    if autoscale:
        a = autoscale
        print(
            f"\nautoscaler (simulated decoder, 1..{a['max_replicas']} replicas, target {a['target']} ongoing "
            f"requests a replica, load reported every {a['metric_push_s']} s, look-back {a['look_back_period_s']} s, "
            f"upscale delay {a['upscale_delay_s']} s, "
            f"downscale delay {a['downscale_delay_s']} s):"
            f" load step {a['light']} -> {a['light'] + a['step']} clients"
        )
        print(
            f"  second replica running after {a.get('added', float('nan')):.1f} s; serving turns after "
            f"{a.get('serving', float('nan')):.1f} s; peak {a['peak']} replicas"
        )
        print(f"  after the load stopped, back to one replica in {a['back_to_one']:.1f} s")
        print(
            f"  step clients' turns: {a['step_ok']}/{a['step_turns']} ok, first text P50 / P99 "
            f"{a['step_first_p50_ms']:.0f} / {a['step_first_p99_ms']:.0f} ms, warm share {a['warm_share']:.2f}, "
            f"failed: {a['step_failures'] or 'none'}"
        )


def capacity(results: Path, players: int, reading_s: list[float], vcpu_hour: float) -> None:
    """The capacity model for `players` concurrent players, from the measured one-replica embedded row:
    each player reads `reading_s` between turns, a turn takes what it took in that row (its clients over
    its turns/s), a replica serves that row's turns/s on whole cores of what it used."""
    row = next(r for r in json.loads(results.read_text())["rows"] if r["row"] == "embedded" and r["replicas"] == 1)
    turn_s = row["clients"] / row["turns_per_s"]
    cores = math.ceil(max(row["replica_cores"]))
    rss_gb = max(row["replica_rss_mb"]) / 1024
    print(
        f"\ncapacity for {players:,} concurrent players, from the embedded 1-replica row: {row['turns_per_s']:.2f} "
        f"turns/s a replica, a turn {turn_s:.1f} s, {cores} cores and {rss_gb:.1f} GB a replica; "
        f"${vcpu_hour} per vCPU-hour (assumed)"
    )
    print("| reading time s | turns/s needed | replicas | vCPUs | memory TB | $ per hour | $ per player-hour |")
    print("|---|---|---|---|---|---|---|")
    for r in reading_s:
        need = players / (r + turn_s)
        replicas = math.ceil(need / row["turns_per_s"])
        cost = replicas * cores * vcpu_hour
        print(
            f"| {r:.0f} | {need:.0f} | {replicas:,} | {replicas * cores:,} | {replicas * rss_gb / 1024:.1f} | "
            f"{cost:,.0f} | {cost / players:.3f} |"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration-s", type=float, default=40.0, help="load per simulated row")
    p.add_argument("--embedded-duration-s", type=float, default=90.0, help="load per embedded-model row")
    p.add_argument("--clients-per-replica", type=int, default=16, help="simulated rows")
    p.add_argument("--embedded-clients-per-replica", type=int, default=2)
    p.add_argument("--step-ms", type=float, default=25.0)
    p.add_argument("--per-seq-ms", type=float, default=4.0)
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--skip-embedded", action="store_true")
    p.add_argument("--think-s", type=float, default=3.0, help="reading time between turns in the router rows")
    p.add_argument("--skip-autoscale", action="store_true")
    p.add_argument("--only-autoscale", action="store_true")
    p.add_argument(
        "--metric-push-s",
        type=float,
        default=None,
        help="how often replicas and handles report their load to the autoscaler (Ray's default: 10 s)",
    )
    p.add_argument("--step-clients", type=int, default=32)
    p.add_argument("--autoscale-hold-s", type=float, default=60.0)
    p.add_argument("--downscale-delay-s", type=float, default=30.0)
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--postgres-admin", default="host=127.0.0.1 port=5432 user=postgres dbname=test")
    p.add_argument("--port", type=int, default=8791)
    p.add_argument("--out", type=Path, default=HERE / "results" / "scale.json")
    p.add_argument("--capacity", type=Path, help="only print the capacity model from this results file")
    p.add_argument("--players", type=int, default=10_000)
    p.add_argument("--reading-s", type=lambda v: [float(x) for x in v.split(",")], default=[20.0, 60.0])
    p.add_argument("--vcpu-hour", type=float, default=0.05, help="an assumed price of a vCPU-hour")
    args = p.parse_args()
    if args.capacity:
        capacity(args.capacity, args.players, args.reading_s, args.vcpu_hour)
        return

    import ray
    from ray import serve

    src = HERE.parent / "src"
    if args.metric_push_s is not None:  # read by Ray's processes at start, so set before Ray starts
        for what in ("REPLICA", "HANDLE"):
            os.environ[f"RAY_SERVE_{what}_AUTOSCALING_METRIC_PUSH_INTERVAL_S"] = str(args.metric_push_s)
    ray.init(
        num_cpus=16,  # logical: the replicas share the 2 real cores, which the CPU column shows
        include_dashboard=False,
        runtime_env={"env_vars": {"PYTHONPATH": f"{HERE}:{src}", "OMP_NUM_THREADS": str(os.cpu_count())}},
    )
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    schema, db = fresh_schema(args.postgres_admin)
    shared = {"database_url": db, "redis_url": args.redis_url, "generation_slots": 16, "generation_queue": 256}
    sim = {"step_ms": args.step_ms, "per_seq_ms": args.per_seq_ms, "max_batch": args.max_batch} | shared
    rows, autoscale = [], None
    print(f"machine: {os.cpu_count()} cores; Ray {ray.__version__}")
    try:
        plan = [] if args.only_autoscale else [("simulated", n, {}) for n in (1, 2, 3)]
        # back to back, Ray's default router keeps a session where it was too (the replica that just
        # answered has one request fewer): the routers are compared with players reading between turns
        for router, extra in (("session affinity", {}), ("Ray's default router", {"default": 1})):
            if not args.only_autoscale:
                plan.append((f"simulated, {router}, reading {args.think_s:.0f} s", 2, extra | {"think": args.think_s}))
        if not args.skip_embedded and not args.only_autoscale:
            plan += [("embedded", n, {}) for n in (1, 2)]
        for label, n, extra in plan:
            replica = {"num_replicas": n}
            if extra.get("default"):
                replica["request_router_config"] = {"request_router_class": DEFAULT_ROUTER}
            embedded = label.startswith("embedded")
            t0 = time.perf_counter()
            base = deploy(
                f"scale:{'embedded_app' if embedded else 'simulated_app'}",
                shared if embedded else sim,
                replica,
                args.port,
            )
            print(f"{label}: {n} replicas up in {time.perf_counter() - t0:.1f} s", flush=True)
            clients = n * (args.embedded_clients_per_replica if embedded else args.clients_per_replica)
            duration = args.embedded_duration_s if embedded else args.duration_s
            row = asyncio.run(replicas_row(label, base, n, clients, duration, extra.get("think", 0.0)))
            print(json.dumps(row), flush=True)
            rows.append(row)
            serve.delete(APP)
        if not args.skip_autoscale:
            from emotional_engine.service.ray_serve import autoscaling

            options = autoscaling(1, 3)
            # as shipped (serve.yaml), but the replicas given back after 30 s idle rather than 120: a shorter run
            cfg = options["autoscaling_config"] | {"downscale_delay_s": args.downscale_delay_s}
            options["autoscaling_config"] = cfg
            base = deploy("scale:simulated_app", sim, options, args.port)
            light = 4
            autoscale = asyncio.run(autoscale_run(base, light, args.step_clients, args.autoscale_hold_s))
            autoscale |= {
                "light": light,
                "step": args.step_clients,
                "max_replicas": 3,
                "target": cfg["target_ongoing_requests"],
                "upscale_delay_s": cfg["upscale_delay_s"],
                "look_back_period_s": cfg["look_back_period_s"],
                "metric_push_s": args.metric_push_s or 10.0,
                "downscale_delay_s": cfg["downscale_delay_s"],
            }
            print(json.dumps(autoscale), flush=True)
            serve.delete(APP)
    finally:
        serve.shutdown()
        ray.shutdown()
        with psycopg.connect(args.postgres_admin, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    print_tables(rows, autoscale)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "autoscale": autoscale}, indent=1) + "\n")


if __name__ == "__main__":
    main()
