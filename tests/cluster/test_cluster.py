"""A multi-host run on this machine (`make test-cluster`, as root): a real Ray cluster of a head and two
worker hosts, each a network namespace (netns_cluster.py), sharing the real PostgreSQL and Redis. Stories
and sessions are served through the head; a worker host is killed mid-load (its link down, every process
SIGKILLed) and nothing acknowledged is lost: every turn answered 200 is in the store at its index, every
accepted job finishes (the dead host's taken over when its lease lapses), the surviving replica serves what
follows, and what failed failed cleanly (a 5xx with an error body, or a stream's error event)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx
import psycopg
import pytest
from netns_cluster import NetnsCluster, clean_leftovers, missing_requirements

from db_fixtures import PG_HOST, REDIS_URL
from service_helpers import parse_sse

pytestmark = pytest.mark.cluster

PREMISE = "A lighthouse keeper finds a letter from her lost brother."
SETTINGS = {
    "auth_enabled": False,
    "rate_limit_requests_per_min": 10**6,
    "session_turns": 6,
    "job_words_threshold": 400,
    "job_lease_s": 2.0,
    "max_concurrent_per_key": 64,  # every player and job is one (anonymous) key: after the kill, on one replica
}
DELAY = 0.05  # seconds per call of the fake model: a 600-word job runs for several seconds
SESSIONS_PER_REPLICA = 3  # sessions played at once, one turn after another each; every other one streams


@pytest.fixture
def cluster():
    """The network of the three hosts, the forwarders to PostgreSQL and Redis; torn down afterwards (also
    when the test fails), and nothing of it may remain."""
    if why := missing_requirements():
        pytest.fail(why)
    clean_leftovers()
    pg_host, pg_port = PG_HOST.rsplit("@", 1)[1].split("/", 1)[0].split(":")
    redis = urlsplit(REDIS_URL)
    c = NetnsCluster(forward={5432: (pg_host, int(pg_port)), 6379: (redis.hostname, redis.port or 6379)})
    try:
        c.up()
        yield c
    finally:
        c.down()
    assert not c.leftovers(), c.leftovers()


@dataclass
class Turn:
    sid: str
    action: str
    sent: float  # monotonic
    status: int | None = None  # None: no HTTP answer (a transport error)
    index: int | None = None  # the committed beat's index (acknowledged)
    replica: str | None = None
    error: str | None = None  # what a failed turn said (or raised)

    @property
    def acknowledged(self) -> bool:
        return self.index is not None

    @property
    def clean(self) -> bool:
        """A failure the client can act on: a 5xx with an error body, or a stream's error event."""
        return self.error is not None and self.error.startswith("error:")


async def turn(c: httpx.AsyncClient, sid: str, action: str, stream: bool) -> Turn:
    t = Turn(sid, action, time.monotonic())
    try:
        if stream:
            async with c.stream(
                "POST", f"/v1/sessions/{sid}/turns", json={"action": action}, headers={"accept": "text/event-stream"}
            ) as r:
                t.status, t.replica = r.status_code, r.headers.get("x-ee-replica")
                text = "".join([chunk async for chunk in r.aiter_text()])
            if r.status_code == 200:
                events = parse_sse(text)
                kinds = [e for e, _ in events]
                if kinds and kinds[-1] == "beat":
                    t.index = json.loads(events[-1][1])["index"]
                elif kinds and kinds[-1] == "error":
                    t.error = "error: stream " + json.loads(events[-1][1])["error"]["type"]
                else:
                    t.error = f"a stream that ended without a beat or an error: {kinds}"
                return t
        else:
            r = await c.post(f"/v1/sessions/{sid}/turns", json={"action": action})
            t.status, t.replica, text = r.status_code, r.headers.get("x-ee-replica"), r.text
            if r.status_code == 200:
                t.index = r.json()["index"]
                return t
        try:
            kind = json.loads(text)["error"]["type"]
        except (ValueError, KeyError, TypeError):
            kind = None
        t.error = f"error: {t.status} {kind}" if t.status >= 500 and kind else f"{t.status}: {text[:200]}"
    except (httpx.HTTPError, ValueError, KeyError) as e:
        t.error = f"{type(e).__name__}: {e}"
    return t


async def play(c: httpx.AsyncClient, sid: str, stream: bool, stop: asyncio.Event, log: list[Turn]) -> None:
    """One player: a turn after another on one session until `stop`; a failed turn is not sent again."""
    k = 1
    while not stop.is_set():
        log.append(await turn(c, sid, f"She reads page {k} of the letter.", stream))
        k += 1
        await asyncio.sleep(0.05)


async def poll(c: httpx.AsyncClient, path: str, until, timeout: float, every: float = 0.5) -> httpx.Response:
    """GET `path` until `until(response)` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = await c.get(path)
            if until(last):
                return last
        except httpx.HTTPError as e:
            last = e
        await asyncio.sleep(every)
    raise AssertionError(f"{path} never got there: {getattr(last, 'text', last)}")


async def test_a_worker_host_killed_mid_load_loses_nothing_acknowledged(cluster, postgres_admin, postgres_url, capsys):
    t0 = time.monotonic()
    schema = parse_qs(urlsplit(postgres_url).query)["options"][0].split("=", 1)[1]
    pg_netloc = urlsplit(postgres_url).netloc
    on_bridge = pg_netloc.split("@")[0] + f"@{cluster.bridge_ip}:5432"
    app_kwargs = {
        "delay": DELAY,
        "database_url": postgres_url.replace(pg_netloc, on_bridge, 1),
        "redis_url": f"redis://{cluster.bridge_ip}:6379/0",
        **SETTINGS,
    }
    cluster.start_ray()
    replicas = cluster.deploy("ray_apps:fake_app", app_kwargs)  # {replica actor name: host}
    assert sorted(replicas.values()) == ["w1", "w2"], replicas  # one replica a worker host
    deployed = time.monotonic()

    async with httpx.AsyncClient(base_url=cluster.url, timeout=90) as c:
        await poll(c, "/readyz", lambda r: r.status_code == 200, timeout=60)
        r = await c.post("/v1/stories", json={"premise": PREMISE, "words": 150, "seed": 3})
        assert r.status_code == 200, r.text
        assert r.headers["x-ee-replica"] in replicas and r.json()["scenes"] and "harbour" in r.json()["text"]

        # sessions, each with a first turn, until each replica holds SESSIONS_PER_REPLICA of them (a session's
        # turns go to one replica while it lives, chosen by hashing its id)
        log: list[Turn] = []
        homes: dict[str, str] = {}  # session -> the replica that served its turns before the kill
        while min(list(homes.values()).count(name) for name in replicas) < SESSIONS_PER_REPLICA:
            assert len(homes) < 8 * SESSIONS_PER_REPLICA, f"the sessions do not spread over both replicas: {homes}"
            r = await c.post("/v1/sessions", json={"premise": PREMISE})
            assert r.status_code == 201, r.text
            log.append(first := await turn(c, r.json()["id"], "She opens the letter.", stream=False))
            assert first.index == 0, first
            homes[first.sid] = first.replica
        sids = list(homes)
        stop = asyncio.Event()
        players = [asyncio.create_task(play(c, sid, i % 2 == 1, stop, log)) for i, sid in enumerate(sids)]
        try:
            await asyncio.sleep(2)
            # three jobs; the host of the replica that accepted the first (and runs it) is the one killed
            jobs: dict[str, str] = {}  # job -> the replica that accepted it
            for seed in range(3):
                r = await c.post("/v1/jobs", json={"premise": PREMISE, "words": 600, "seed": seed})
                assert r.status_code == 202, r.text
                jobs[r.json()["id"]] = r.headers["x-ee-replica"]
            victims_job, victim = next(iter(jobs.items()))
            survivor = next(name for name in replicas if name != victim)
            r = await poll(c, f"/v1/jobs/{victims_job}", lambda r: r.json()["progress"]["scenes_done"] >= 1, 30, 0.1)
            assert r.json()["status"] == "running"

            killed = time.monotonic()
            await asyncio.to_thread(cluster.kill_host, replicas[victim])
            dead = time.monotonic()  # its link down and every process of it gone

            # the load goes on until the dead host's sessions are served by the survivor, and a little after
            orphans = {sid for sid, home in homes.items() if home == victim}
            moved = set()
            while time.monotonic() - killed < 60 and moved != orphans:
                moved = {t.sid for t in log if t.sent > dead and t.acknowledged and t.sid in orphans}
                await asyncio.sleep(0.2)
            await asyncio.sleep(3)
        finally:
            stop.set()
            await asyncio.gather(*players)
        r = await c.post("/v1/stories", json={"premise": PREMISE, "words": 150, "seed": 4})
        assert r.status_code == 200 and r.headers["x-ee-replica"] == survivor, r.text

        done = {}
        for job_id in jobs:
            r = await poll(c, f"/v1/jobs/{job_id}", lambda r: r.json()["status"] in ("done", "failed"), timeout=60)
            done[job_id] = r.json()
        api_beats = {sid: (await c.get(f"/v1/sessions/{sid}")).json()["beats"] for sid in sids}

    with psycopg.connect(postgres_admin) as db:  # the store itself, not what a replica says of it
        stored = db.execute(f'SELECT session_id, "index", action FROM "{schema}".session_turns').fetchall()
    stored_at = {(sid, index): action for sid, index, action in stored}
    stored_actions = {sid: [a for (s, _), a in sorted(stored_at.items()) if s == sid] for sid in sids}

    acked = [t for t in log if t.acknowledged]
    failed = [t for t in log if not t.acknowledged]
    after = [t for t in acked if t.sent > dead]
    firsts = [t.sent for t in after if t.sid in orphans]
    summary = {
        "turns_sent": len(log),
        "acknowledged": len(acked),
        "acknowledged_after_kill": len(after),
        "failed": len(failed),
        "failures": sorted({t.error for t in failed}),
        "jobs": [("killed host" if jobs[j] == victim else "survivor", d["status"]) for j, d in done.items()],
        "failed_sent_at_s": [round(t.sent - killed, 1) for t in failed],
        "kill_s": round(dead - killed, 2),
        "failover_s": round(min(firsts) - killed, 1) if firsts else None,
        "cluster_up_s": round(deployed - t0, 1),
        "total_s": round(time.monotonic() - t0, 1),
    }
    with capsys.disabled():  # shown by `make test-cluster` (pytest -q) too
        print("\ncluster run: " + ", ".join(f"{k}={v}" for k, v in summary.items()))

    # every acknowledged turn is in the store, at its index, and the API shows the same
    lost = [(t.sid, t.index, t.action) for t in acked if stored_at.get((t.sid, t.index)) != t.action]
    assert not lost, f"acknowledged turns missing from the store: {lost}"
    assert {sid: [b["action"] for b in beats] for sid, beats in api_beats.items()} == stored_actions
    # before the kill each session's turns went to one replica
    assert all(t.replica == homes[t.sid] for t in acked if t.sent < killed)
    # every accepted job finished, the killed host's taken over by the survivor
    assert all(d["status"] == "done" for d in done.values()), done
    assert all(len(d["story"]["scenes"]) == d["progress"]["scenes_total"] for d in done.values())
    # after the kill every turn went to the surviving replica, and all its sessions played on
    assert moved == orphans, f"sessions of the dead host never served again: {orphans - moved}"
    assert {t.replica for t in after} == {survivor}, {t.replica for t in after}
    assert {t.sid for t in after} == set(sids)
    assert not [t for t in failed if t.sent >= min(firsts)], "turns failed after the survivor took the load"
    # what failed failed cleanly: a 5xx with an error body, or a stream's error event, never a cut answer
    assert all(t.clean for t in failed), [t.error for t in failed if not t.clean]
