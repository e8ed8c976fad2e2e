"""Long stories as jobs: progress, the story when done, cancellation, resuming after a restart, and
failures told by a code and an incident id rather than the exception's words."""

import asyncio

import pytest
from sqlalchemy.exc import IntegrityError

from emotional_engine.service.errors import ApiError
from emotional_engine.service.storecalls import call
from emotional_engine.storage import Store
from fakes import harbour_generator
from service_helpers import wait_for_job

LONG = {"premise": "A lighthouse keeper finds a letter.", "words": 600, "seed": 11}


async def test_a_job_reports_progress_and_gives_the_story(app_client):
    async with app_client() as c:
        r = await c.post("/v1/jobs", json=LONG)
        assert r.status_code == 202
        job = await wait_for_job(c, r.json()["id"], lambda j: j["status"] == "done")
        assert job["progress"]["scenes_done"] == job["progress"]["scenes_total"] == len(job["story"]["scenes"])
        assert (await c.get(f"/v1/stories/{job['story_id']}")).status_code == 200


async def test_a_job_can_be_cancelled(app_client):
    async with app_client(generator=harbour_generator(delay=0.2)) as c:
        job_id = (await c.post("/v1/jobs", json=LONG)).json()["id"]
        r = await c.delete(f"/v1/jobs/{job_id}")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        await asyncio.sleep(0.3)
        assert (await c.get(f"/v1/jobs/{job_id}")).json()["status"] == "cancelled"
        assert (await c.delete(f"/v1/jobs/{job_id}")).status_code == 409
        assert (await c.get("/v1/jobs/nope")).status_code == 404


async def test_a_job_resumes_after_a_restart_from_its_last_finished_scene(app_client, make_key):
    key = make_key()
    async with app_client(key=key, generator=harbour_generator(delay=0.3)) as c:
        job_id = (await c.post("/v1/jobs", json=LONG)).json()["id"]
        before = await wait_for_job(c, job_id, lambda j: j["progress"]["scenes_done"] >= 1)
    # the server stopped mid-story; a new one on the same database picks the job up
    gen = harbour_generator()
    async with app_client(key=key, generator=gen) as c:
        job = await wait_for_job(c, job_id, lambda j: j["status"] == "done")
        total, done_before = job["progress"]["scenes_total"], before["progress"]["scenes_done"]
        assert done_before < total == len(job["story"]["scenes"])
        assert len(gen.streams) == 2 * (total - done_before)  # only the unfinished scenes were written (2 candidates)


async def test_a_resumed_job_keeps_the_plan_its_first_scenes_were_written_to(app_client, make_key, settings):
    """A model-written outline need not come out the same twice; the job keeps the one it began with.
    Here a planted outline line in the saved plan must reach the resumed scenes."""
    key = make_key()
    async with app_client(key=key, generator=harbour_generator(delay=0.3)) as c:
        job_id = (await c.post("/v1/jobs", json=LONG)).json()["id"]
        await wait_for_job(c, job_id, lambda j: j["progress"]["scenes_done"] >= 1)
    store = Store.from_settings(settings)
    job = store.unfinished_jobs()[0]
    done = len(job.progress["outcomes"])
    planted = {"place": "old pier", "lead": "whoever", "event": "The tide turns."}
    for sc in job.progress["plan"]["scenes"][done:]:
        sc["outline"] = planted
    store.checkpoint_job(job_id, job.progress)
    store.close()
    async with app_client(key=key, generator=harbour_generator()) as c:
        scenes = (await wait_for_job(c, job_id, lambda j: j["status"] == "done"))["story"]["scenes"]
    assert [sc["outline"] for sc in scenes[done:]] == [planted] * (len(scenes) - done)
    assert all(sc["outline"] is None for sc in scenes[:done])  # the first scenes were written to the rule plan


async def test_a_failed_job_gives_a_code_and_an_incident_id_and_keeps_the_detail_in_the_log(app_client, caplog):
    def broken(call):
        raise RuntimeError("connect to postgresql://ee:hunter2@10.0.0.5/stories refused")

    async with app_client(generator=harbour_generator(write=broken, reply=broken)) as c:
        job_id = (await c.post("/v1/jobs", json=LONG)).json()["id"]
        job = await wait_for_job(c, job_id, lambda j: j["status"] == "failed")
    error = job["error"]
    assert error["type"] == "generation_failed" and len(error["incident"]) == 12
    assert error["incident"] in error["message"] and "hunter2" not in str(job)
    assert any(error["incident"] in r.getMessage() and "hunter2" in (r.exc_text or "") for r in caplog.records)


async def test_a_conflict_says_so_without_the_databases_words(caplog):
    def insert():
        raise IntegrityError(
            "INSERT INTO beats ...", {"text": "secret"}, Exception("UNIQUE constraint failed: beats.turn")
        )

    with pytest.raises(ApiError) as e:
        await call(None, insert)
    assert e.value.status == 409 and e.value.type == "conflict" and e.value.incident in e.value.message
    assert "UNIQUE" not in e.value.message and "beats" not in e.value.message
    assert any(e.value.incident in r.getMessage() and "UNIQUE" in r.getMessage() for r in caplog.records)


async def test_two_workers_on_one_database_run_a_job_once(app_client, make_key):
    key = make_key()
    a_gen, b_gen = harbour_generator(delay=0.05), harbour_generator()
    async with app_client(key=key, generator=a_gen) as a, app_client(key=key, generator=b_gen) as b:
        job_id = (await a.post("/v1/jobs", json=LONG)).json()["id"]
        await b.app.state.service.jobs.take_over()  # b looks while a holds the lease
        job = await wait_for_job(b, job_id, lambda j: j["status"] == "done")
    assert job["progress"]["scenes_done"] == len(job["story"]["scenes"])
    assert a_gen.streams and not b_gen.streams  # written by a alone


async def test_a_dead_workers_job_is_taken_over_when_its_lease_runs_out(app_client, make_key, settings):
    s = settings.model_copy(update={"job_lease_s": 0.6})
    key = make_key(s)
    async with app_client(s, key=key, generator=harbour_generator(delay=0.3)) as a:
        runner = a.app.state.service.jobs
        job_id = (await a.post("/v1/jobs", json=LONG)).json()["id"]
        before = await wait_for_job(a, job_id, lambda j: j["progress"]["scenes_done"] >= 1)

        async def die():  # as if killed: the work stops and the lease is never released
            for task in list(runner.tasks.values()):
                task.cancel()

        runner.release_all = die
    gen = harbour_generator()
    async with app_client(s, key=key, generator=gen) as b:
        assert await b.app.state.service.jobs.take_over() == 0  # the dead worker's lease still holds
        job = await wait_for_job(b, job_id, lambda j: j["status"] == "done")
    total = job["progress"]["scenes_total"]
    assert len(gen.streams) == 2 * (total - before["progress"]["scenes_done"])  # resumed, not restarted


async def test_a_job_that_fails_while_the_database_is_down_is_failed_when_it_returns(app_client, monkeypatch):
    from emotional_engine.service import jobs

    monkeypatch.setattr(jobs, "STORE_RETRY_S", 0.05)

    def broken(call):
        raise RuntimeError("the model fell over")

    async with app_client(generator=harbour_generator(write=broken, reply=broken)) as c:
        store = c.app.state.service.store
        fail, tries = store.fail_job, []

        def down_twice(*args):
            tries.append(1)
            if len(tries) <= 2:
                raise ConnectionError("database unreachable")
            return fail(*args)

        store.fail_job = down_twice
        job_id = (await c.post("/v1/jobs", json=LONG)).json()["id"]
        job = await wait_for_job(c, job_id, lambda j: j["status"] == "failed")
    assert len(tries) == 3 and job["error"]["type"] == "generation_failed"
