"""Faults inside the server (benchmarks/faults.py measures them under load): a model that raises is a
503 the client may retry, never a 500; a job goes on from its last scene when the model fails once; a
store call that fails shows in /readyz at once even while the database's ping answers (a full disk);
an agent that hangs is counted in /metrics the moment it times out."""

import asyncio
import json
import threading
import time

from sqlalchemy.exc import OperationalError

from emotional_engine.agents import technical
from emotional_engine.service import jobs
from fakes import harbour, harbour_generator
from service_helpers import wait_for_job

STORY = {"premise": "A kite festival.", "words": 150}
LONG = {"premise": "A lighthouse keeper finds a letter.", "words": 600, "seed": 11}


def raises(call):
    raise RuntimeError("CUDA error: device-side assert at /opt/secret/path")


async def test_a_model_that_raises_is_a_503_with_retry_after_and_never_its_words(app_client):
    async with app_client(generator=harbour_generator(write=raises, reply=raises)) as c:
        for r in (
            await c.post("/v1/stories", json=STORY),
            await c.post(
                f"/v1/sessions/{(await c.post('/v1/sessions', json=STORY)).json()['id']}/turns",
                json={"action": "I wait."},
            ),
        ):
            assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
            error = r.json()["error"]
            assert error["type"] == "model_failed" and error["incident"] in error["message"]
            assert "secret" not in r.text and "CUDA" not in r.text
        sid = (await c.post("/v1/sessions", json=STORY)).json()["id"]
        r = await c.post(
            f"/v1/sessions/{sid}/turns", json={"action": "I wait."}, headers={"Accept": "text/event-stream"}
        )
        events = [json.loads(line[5:]) for line in r.text.splitlines() if line.startswith("data:")]
        assert events[-1]["error"]["type"] == "model_failed" and "secret" not in r.text
        assert 'ee_errors_total{type="model_failed"} 3.0' in (await c.get("/metrics")).text


async def test_a_job_goes_on_from_its_last_scene_when_the_model_fails_once(app_client, monkeypatch):
    monkeypatch.setattr(jobs, "MODEL_RETRY_S", 0.0)
    failed = []

    def fails_once_in_scene_two(call):
        if call.index == 2 and not failed:  # scene 1 is streams 0 and 1 (two candidates)
            failed.append(call)
            raise RuntimeError("the model server went away")
        return harbour(call)

    gen = harbour_generator(write=fails_once_in_scene_two)
    async with app_client(generator=gen) as c:
        job_id = (await c.post("/v1/jobs", json=LONG)).json()["id"]
        job = await wait_for_job(c, job_id, lambda j: j["status"] in ("done", "failed"))
        assert failed and job["status"] == "done", job
        total = job["progress"]["scenes_total"]
        assert total == len(job["story"]["scenes"])
        # scene 2 was begun again, scene 1 was not: from scratch it would be 2 * total + 3 or more
        assert 2 * total < len(gen.streams) <= 2 * total + 2


async def test_readyz_names_the_database_while_its_calls_fail_though_its_ping_answers(app_client, monkeypatch):
    async with app_client() as c:
        service = c.app.state.service

        def disk_full(*a, **kw):
            raise OperationalError("INSERT INTO sessions", {}, Exception("database or disk is full"))

        monkeypatch.setattr(service.store.sessions, "create", disk_full)
        assert (await c.get("/readyz")).json()["status"] == "ready"
        r = await c.post("/v1/sessions", json=STORY)
        assert r.status_code == 503 and r.json()["error"]["type"] == "database_unavailable"
        ready = (await c.get("/readyz")).json()
        assert ready["status"] == "degraded" and ready["degraded"][0].startswith("database: calls failing")
        assert 'ee_part_degraded{part="database"} 1.0' in (await c.get("/metrics")).text
        service.store_failed_at = time.monotonic() - 2  # a while later, with no failure since
        assert (await c.get("/readyz")).json()["status"] == "ready"


async def test_a_hanging_agent_is_skipped_after_the_agent_timeout_and_counted_at_once(
    app_client, settings, monkeypatch
):
    check_text = technical.check_text

    def hangs(*a, **kw):
        time.sleep(0.5)
        return check_text(*a, **kw)

    monkeypatch.setattr(technical, "check_text", hangs)
    before = technical_failures = None
    async with app_client(settings.model_copy(update={"agent_timeout_s": 0.05})) as c:
        before = _agent_failures((await c.get("/metrics")).text)
        r = await c.post("/v1/stories", json=STORY)
        assert r.status_code == 200 and "technical" in r.json()["degraded"]
        technical_failures = _agent_failures((await c.get("/metrics")).text)
    assert technical_failures > before


def _agent_failures(metrics: str) -> float:
    lines = [line for line in metrics.splitlines() if line.startswith('ee_agent_failures_total{agent="technical"}')]
    return float(lines[0].split()[-1]) if lines else 0.0


async def test_a_job_waits_for_the_database_at_a_checkpoint_instead_of_failing(app_client, monkeypatch):
    monkeypatch.setattr(jobs, "STORE_RETRY_S", 0.05)
    async with app_client() as c:
        store = c.app.state.service.store
        checkpoint, refused = store.checkpoint_job, []

        def down_twice(*a):
            if len(refused) < 2:
                refused.append(a)
                raise OperationalError("UPDATE jobs", {}, Exception("connection refused"))
            return checkpoint(*a)

        monkeypatch.setattr(store, "checkpoint_job", down_twice)
        job_id = (await c.post("/v1/jobs", json=LONG)).json()["id"]
        job = await wait_for_job(c, job_id, lambda j: j["status"] in ("done", "failed"))
        assert len(refused) == 2 and job["status"] == "done", job
        assert job["progress"]["scenes_done"] == job["progress"]["scenes_total"]


async def test_hung_agents_never_take_the_threads_that_store_calls_need(app_client, settings, monkeypatch):
    """A timed-out agent's thread runs on (Python cannot stop it); with agents on the shared pool that
    asyncio.to_thread uses, a few hung agents left no thread for the database and every request froze."""
    from concurrent.futures import ThreadPoolExecutor

    from emotional_engine.agents.base import FAILURES

    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=4))
    release, check_text = threading.Event(), technical.check_text

    def hangs(*a, **kw):
        release.wait(60)
        return check_text(*a, **kw)

    before = FAILURES["technical"]
    try:
        async with app_client(settings.model_copy(update={"agent_timeout_s": 0.05, "max_concurrent_per_key": 8})) as c:
            monkeypatch.setattr(technical, "check_text", hangs)  # once started (the start warms the agents up)
            stories = [asyncio.ensure_future(c.post("/v1/stories", json={**STORY, "seed": i})) for i in range(8)]
            for _ in range(400):  # until as many agents hang as the shared pool has threads
                if FAILURES["technical"] - before >= 4:
                    break
                await asyncio.sleep(0.05)
            assert FAILURES["technical"] - before >= 4
            r = await asyncio.wait_for(c.post("/v1/sessions", json=STORY), 30)  # a liveness bound, not a speed one
            assert r.status_code == 201
            done = await asyncio.gather(*stories)
            assert all(r.status_code == 200 for r in done), [(r.status_code, r.text[:200]) for r in done]
    finally:
        release.set()
