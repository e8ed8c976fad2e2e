"""Rate limits (in-process and shared through Redis), concurrency limits, load shedding, Redis down."""

import asyncio
import uuid

import pytest

from fakes import harbour_generator

STORY = {"premise": "A kite festival.", "words": 150}


async def admitted(c, n: int) -> None:
    """Wait until n generations hold or wait for a slot (requests take a while to get there)."""
    admission = c.app.state.service.admission
    for _ in range(400):
        if admission.running + admission.waiting >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the requests never reached the admission control")


async def test_requests_over_the_per_minute_limit_get_429_with_retry_after(app_client, settings):
    s = settings.model_copy(update={"rate_limit_requests_per_min": 3})
    async with app_client(s) as c:
        codes = [(await c.get("/v1/models")).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = await c.get("/v1/models")
        assert r.json()["error"]["type"] == "rate_limited" and 1 <= int(r.headers["retry-after"]) <= 60
        assert (await c.get("/healthz")).status_code == 200  # health is never limited


async def test_keys_have_separate_limits(app_client, settings, make_key):
    s = settings.model_copy(update={"rate_limit_requests_per_min": 1})
    other = make_key(s, name="other")
    async with app_client(s) as c:
        assert (await c.get("/v1/models")).status_code == 200
        assert (await c.get("/v1/models")).status_code == 429
        assert (await c.get("/v1/models", headers={"Authorization": f"Bearer {other}"})).status_code == 200


async def test_generated_tokens_count_against_the_key(app_client, settings):
    s = settings.model_copy(update={"rate_limit_tokens_per_min": 20})
    async with app_client(s) as c:
        assert (await c.post("/v1/stories", json=STORY)).status_code == 200  # spends more than 20 tokens
        r = await c.post("/v1/stories", json=STORY)
        assert r.status_code == 429 and "tokens" in r.json()["error"]["message"] and r.headers["retry-after"]


async def test_a_full_queue_sheds_with_503_and_retry_after(app_client, settings, make_key):
    s = settings.model_copy(update={"generation_slots": 1, "generation_queue": 1})
    keys = [make_key(s, name=f"k{i}") for i in range(3)]
    async with app_client(s, generator=harbour_generator(delay=0.3)) as c:
        reqs = [c.post("/v1/stories", json=STORY, headers={"Authorization": f"Bearer {k}"}) for k in keys]
        first = asyncio.ensure_future(reqs[0])
        await admitted(c, 1)
        second = asyncio.ensure_future(reqs[1])
        await admitted(c, 2)
        third = await reqs[2]
        assert third.status_code == 503 and third.json()["error"]["type"] == "overloaded"
        assert int(third.headers["retry-after"]) >= 1
        assert (await first).status_code == 200 and (await second).status_code == 200
        metrics = (await c.get("/metrics")).text
        assert "ee_load_shed_total 1.0" in metrics


async def test_concurrent_generations_per_key_are_limited(app_client, settings):
    s = settings.model_copy(update={"max_concurrent_per_key": 1})
    async with app_client(s, generator=harbour_generator(delay=0.3)) as c:
        first = asyncio.ensure_future(c.post("/v1/stories", json=STORY))
        await admitted(c, 1)
        r = await c.post("/v1/stories", json=STORY)
        assert r.status_code == 429 and r.json()["error"]["type"] == "too_many_concurrent"
        assert (await first).status_code == 200


@pytest.mark.services
async def test_two_app_instances_share_limits_through_redis(app_client, settings, redis_url, make_key):
    s = settings.model_copy(update={"rate_limit_requests_per_min": 3, "redis_url": redis_url})
    key = make_key(s)
    async with app_client(s, key=key) as a, app_client(s, key=key) as b:
        codes = [(await x.get("/v1/models")).status_code for x in (a, b, a, b)]
        assert codes == [200, 200, 200, 429]


@pytest.mark.services
async def test_a_shared_redis_cache_serves_the_other_instance(app_client, tmp_path, settings, redis_url, make_key):
    story = {**STORY, "premise": f"A kite festival {uuid.uuid4().hex}.", "seed": 1}
    s1 = settings.model_copy(update={"redis_url": redis_url})
    s2 = s1.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'other.db'}"})  # no shared L3
    async with app_client(s1) as a, app_client(s2) as b:
        assert (await a.post("/v1/stories", json=story)).json()["cached"] is False
        r = (await b.post("/v1/stories", json=story)).json()
        assert r["cached"] is True and b.app.state.service.engine.generator.inner.calls == []
        assert b.app.state.service.cache.stats()["l2"]["hits"] == 1


async def test_unreachable_redis_degrades_without_errors(app_client, settings):
    s = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0", "rate_limit_requests_per_min": 5})
    async with app_client(s) as c:
        story = {**STORY, "seed": 2}
        assert (await c.post("/v1/stories", json=story)).status_code == 200
        r = (await c.post("/v1/stories", json=story)).json()
        assert r["cached"] is True  # L1 still answers
        ready = await c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        assert any(p.startswith("redis") for p in ready.json()["degraded"])
        codes = [(await c.get("/v1/models")).status_code for _ in range(4)]
        assert codes[-1] == 429  # limits still hold, per process
        assert 'ee_part_degraded{part="redis"} 1.0' in (await c.get("/metrics")).text


async def test_a_request_that_waits_too_long_for_a_slot_is_shed(app_client, settings, make_key):
    s = settings.model_copy(update={"generation_slots": 1, "generation_queue": 5, "generation_max_wait_s": 0.2})
    other = make_key(s, name="other")
    async with app_client(s, generator=harbour_generator(delay=0.3)) as c:
        first = asyncio.ensure_future(c.post("/v1/stories", json=STORY))
        await admitted(c, 1)
        r = await c.post("/v1/stories", json=STORY, headers={"Authorization": f"Bearer {other}"})
        assert r.status_code == 503 and "within" in r.json()["error"]["message"] and r.headers["retry-after"]
        assert (await first).status_code == 200
        admission = c.app.state.service.admission
        assert admission.running == admission.waiting == 0


async def test_a_burst_is_admitted_up_to_slots_plus_queue_and_no_further():
    from emotional_engine.service.errors import ApiError
    from emotional_engine.service.limits import Admission

    admission = Admission(slots=2, queue=3, per_key=100, max_wait_s=5)
    tasks = [asyncio.ensure_future(admission.acquire("k")) for _ in range(8)]  # all arrive before any runs
    await asyncio.sleep(0.05)
    shed = [t for t in tasks if t.done() and isinstance(t.exception(), ApiError) and t.exception().status == 503]
    held = [t.result() for t in tasks if t.done() and t.exception() is None]
    assert len(held) == 2 and len(shed) == 3 and admission.waiting == 3  # 2 run, 3 wait, 3 refused at once
    for t in held:
        t.release()
    await asyncio.sleep(0.05)
    assert admission.running == 2 and admission.waiting == 1
    for t in tasks:
        if not t.done():
            t.cancel()
        elif t.exception() is None:
            t.result().release()
    await asyncio.sleep(0.05)
    assert admission.running == 0 and admission.waiting == 0 and not admission._per_key


async def test_made_up_http_methods_share_one_metrics_label(app_client):
    async with app_client() as c:
        for i in range(5):
            await c.request(f"BREW{i}", "/v1/models")
        metrics = (await c.get("/metrics")).text
        assert "BREW" not in metrics
        assert 'ee_http_requests_total{method="other",route="/v1/models",status="405"} 5.0' in metrics


async def test_a_burst_of_health_and_metrics_calls_reads_the_database_once(app_client):
    async with app_client() as c:
        service = c.app.state.service
        ping, calls = service.store.ping, []
        service.store.ping = lambda: calls.append(1) or ping()
        codes = await asyncio.gather(*(c.get(p) for p in ["/readyz", "/metrics"] * 10))
        assert {r.status_code for r in codes} == {200}
        assert len(calls) == 1  # one reading serves every caller for a couple of seconds
        service.probes.clear()  # once it is stale, the next call reads again
        await c.get("/readyz")
        assert len(calls) == 2


async def test_analyze_waits_for_a_generation_slot_and_charges_its_tokens(app_client, settings):
    s = settings.model_copy(update={"max_concurrent_per_key": 1})
    text = {"text": "The harbour woke in fear. " * 40, "windows": 4}  # about 260 tokens
    async with app_client(s, generator=harbour_generator(delay=0.3)) as c:
        story = asyncio.ensure_future(c.post("/v1/stories", json=STORY))
        await admitted(c, 1)
        r = await c.post("/v1/analyze", json=text)
        assert r.status_code == 429 and r.json()["error"]["type"] == "too_many_concurrent"
        await story
    async with app_client(s.model_copy(update={"rate_limit_tokens_per_min": 200})) as c:
        assert (await c.post("/v1/analyze", json=text)).status_code == 200
        r = await c.post("/v1/analyze", json=text)
        assert r.status_code == 429 and "tokens" in r.json()["error"]["message"]


async def test_a_key_has_a_cap_on_unfinished_jobs_and_live_sessions(app_client, settings, make_key):
    s = settings.model_copy(update={"max_jobs_per_key": 2, "max_sessions_per_key": 1})
    other = make_key(s, name="other")
    job = {"premise": "A lighthouse keeper finds a letter.", "words": 600, "seed": 3}
    async with app_client(s, generator=harbour_generator(delay=0.2)) as c:
        assert [(await c.post("/v1/jobs", json=job)).status_code for _ in range(2)] == [202, 202]
        r = await c.post("/v1/jobs", json=job)
        assert r.status_code == 429 and r.json()["error"]["type"] == "too_many_jobs"
        assert "2 unfinished jobs" in r.json()["error"]["message"] and r.headers["retry-after"]
        mine = await c.post("/v1/sessions", json={"premise": "A night ferry."})
        assert mine.status_code == 201
        r = await c.post("/v1/sessions", json={"premise": "A night ferry."})
        assert r.status_code == 429 and r.json()["error"]["type"] == "too_many_sessions"
        theirs = {"Authorization": f"Bearer {other}"}  # the caps are per key
        assert (await c.post("/v1/jobs", json=job, headers=theirs)).status_code == 202
        assert (await c.post("/v1/sessions", json={"premise": "A night ferry."}, headers=theirs)).status_code == 201


async def test_a_generation_reserves_its_tokens_up_front_and_settles_to_what_it_used(app_client, settings):
    s = settings.model_copy(update={"rate_limit_tokens_per_min": 1000})
    story = {"premise": "A kite festival.", "words": 300}  # reserves 600 tokens
    async with app_client(s, generator=harbour_generator(delay=0.2)) as c:
        limiter = c.app.state.service.limiter
        limiter.clock = lambda: 60_000.0  # the clock stands still: nothing refills
        first = asyncio.ensure_future(c.post("/v1/stories", json=story))
        await admitted(c, 1)
        r = await c.post("/v1/stories", json=story)  # charged at the end only, this one ran as well
        assert r.status_code == 429 and "tokens" in r.json()["error"]["message"]
        assert (await first).status_code == 200
        (key_id,) = {who for kind, who in limiter._local if kind == "tokens"}
        counted = 1000 - await limiter.available(key_id, "tokens")
        assert 0 < counted < 600  # settled: what the story used (the harbour model writes few), not 600
        assert (await c.post("/v1/stories", json=story)).status_code == 200


async def test_bad_keys_from_one_address_are_limited(app_client, settings):
    s = settings.model_copy(update={"auth_failures_per_min": 3})
    async with app_client(s) as c:
        bad = {"Authorization": "Bearer ee_guess"}
        codes = [(await c.get("/v1/models", headers=bad)).status_code for _ in range(4)]
        assert codes == [401, 401, 401, 429]
        r = await c.get("/v1/models")  # even a good key, from this address, this minute
        assert r.status_code == 429 and "bad API key" in r.json()["error"]["message"]
        assert int(r.headers["retry-after"]) >= 1
