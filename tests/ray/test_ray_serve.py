"""The service on Ray Serve (service/ray_serve.py), on a local Ray: the same routes through the gateway,
a session's turns kept on one replica, shedding as a 503 with Retry-After, a stream whose replica dies
ending with an error event, and a dead replica's job finished by another."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import httpx
import pytest

from emotional_engine.service.ray_serve import SessionAffinityRouter, affinity_key, model_named, rendezvous_rank
from service_helpers import parse_sse, wait_for_job

PREMISE = "A lighthouse keeper finds a letter from her lost brother."
SETTINGS = {"auth_enabled": False, "session_turns": 6, "job_words_threshold": 400, "rate_limit_requests_per_min": 10**6}


def replica(uid: str):
    return SimpleNamespace(replica_id=SimpleNamespace(unique_id=uid))


# ---- routing, without Ray running --------------------------------------------------------------------


def test_a_request_is_tied_to_its_session_or_its_conversation_and_nothing_else():
    headers = {"authorization": "Bearer k1"}
    assert affinity_key("POST", "/v1/sessions/abc/turns", headers, b"{}") == "session:abc"
    assert affinity_key("GET", "/v1/sessions/abc/memory/2", headers, b"") == "session:abc"
    assert affinity_key("POST", "/v1/sessions", headers, b"{}") is None  # no session yet
    assert affinity_key("POST", "/v1/stories", headers, b"{}") is None

    def chat(messages, auth="Bearer k1"):
        body = json.dumps({"model": "embedded", "messages": messages}).encode()
        return affinity_key("POST", "/v1/chat/completions", {"authorization": auth}, body)

    opening = [{"role": "system", "content": PREMISE}, {"role": "user", "content": "She opens it."}]
    later = opening + [{"role": "assistant", "content": "A beat."}, {"role": "user", "content": "She reads."}]
    assert chat(opening) == chat(later)  # every turn of one conversation
    assert chat(opening[1:]) == chat(later[1:])  # without a system message too
    assert chat(opening[1:]) != chat(opening)
    assert chat(opening) != chat(opening, auth="Bearer k2")  # another caller's
    assert chat(opening[:1] + [{"role": "user", "content": "She burns it."}]) != chat(opening)
    assert affinity_key("POST", "/v1/chat/completions", headers, b"not json") is None


def test_the_model_a_body_names_is_read_for_multiplexing():
    assert model_named(b'{"premise": "x", "model": "kids"}') == "kids"
    assert model_named(b'{"premise": "x"}') is None
    assert model_named(b'{"model": 3}') is None
    assert model_named(b"") is None and model_named(b"{broken") is None


def test_a_key_keeps_its_replica_and_only_a_gone_replicas_keys_move():
    replicas = [replica(f"r{i}") for i in range(4)]
    keys = [f"session:{i}" for i in range(400)]
    first = {k: rendezvous_rank(k, replicas)[0].replica_id.unique_id for k in keys}
    assert first == {k: rendezvous_rank(k, list(reversed(replicas)))[0].replica_id.unique_id for k in keys}
    assert all(n > 60 for n in [list(first.values()).count(f"r{i}") for i in range(4)])  # spread over all four
    without = replicas[:2] + replicas[3:]
    moved = [k for k in keys if rendezvous_rank(k, without)[0].replica_id.unique_id != first[k]]
    assert moved and all(first[k] == "r2" for k in moved)  # r2's keys, and only they, went elsewhere
    grown = [k for k in keys if rendezvous_rank(k, replicas + [replica("r4")])[0].replica_id.unique_id != first[k]]
    assert 0 < len(grown) < len(keys) / 3  # a fifth replica takes about a fifth of the keys


async def test_the_router_ranks_every_replica_for_a_keyed_request():
    replicas = [replica(f"r{i}") for i in range(3)]
    pending = SimpleNamespace(kwargs={"affinity": "session:x"})
    ranks = await SessionAffinityRouter.choose_replicas(None, replicas, pending)
    assert [r for [r] in ranks] == rendezvous_rank("session:x", replicas)  # the first, then the next if it is full


# ---- on a local Ray ---------------------------------------------------------------------------------


async def test_stories_and_a_session_are_served_through_the_gateway(deploy, sqlite_url):
    base = deploy(database_url=sqlite_url, **SETTINGS)
    async with httpx.AsyncClient(base_url=base, timeout=60) as c:
        assert (await c.get("/healthz")).json() == {"status": "ok"}
        assert (await c.get("/readyz")).status_code == 200
        r = await c.post("/v1/stories", json={"premise": PREMISE, "words": 150, "seed": 3})
        assert r.status_code == 200, r.text
        story = r.json()
        assert story["id"] and story["scenes"] and "harbour" in story["text"]
        assert (await c.get(f"/v1/stories/{story['id']}")).json()["text"] == story["text"]
        # the app's own errors come through unchanged
        r = await c.post("/v1/stories", json={"premise": ""})
        assert r.status_code == 422 and r.json()["error"]["type"] == "invalid_request"
        assert (await c.get("/v1/sessions/nope")).json()["error"]["type"] == "not_found"

        sid = (await c.post("/v1/sessions", json={"premise": PREMISE})).json()["id"]
        r = await c.post(f"/v1/sessions/{sid}/turns", json={"action": "She opens the letter."})
        assert r.status_code == 200 and r.json()["index"] == 0
        served_by = r.headers["x-ee-replica"]
        async with c.stream(
            "POST", f"/v1/sessions/{sid}/turns", json={"action": "She climbs."}, headers={"accept": "text/event-stream"}
        ) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            events = parse_sse("".join([t async for t in r.aiter_text()]))
        assert [e for e, _ in events].count("sentence") >= 1 and events[-1][0] == "beat"
        assert json.loads(events[-1][1])["index"] == 1
        assert r.headers["x-ee-replica"] == served_by
        session = (await c.get(f"/v1/sessions/{sid}")).json()
        assert [b["action"] for b in session["beats"]] == ["She opens the letter.", "She climbs."]
        metrics = (await c.get("/metrics")).text
        assert 'ee_session_lookups_total{cache="warm"} 1.0' in metrics  # the second turn found it live


async def test_a_full_queue_is_a_503_with_retry_after(deploy, sqlite_url):
    base = deploy(
        replica={"max_ongoing_requests": 1, "max_queued_requests": 1}, delay=0.5, database_url=sqlite_url, **SETTINGS
    )
    async with httpx.AsyncClient(base_url=base, timeout=60) as c:
        body = {"premise": PREMISE, "words": 150}
        answers = await asyncio.gather(*[c.post("/v1/stories", json=body) for _ in range(6)])
    statuses = sorted(r.status_code for r in answers)
    assert statuses.count(200) >= 1 and statuses.count(503) >= 1 and set(statuses) == {200, 503}
    shed = next(r for r in answers if r.status_code == 503)
    assert int(shed.headers["retry-after"]) >= 1 and shed.json()["error"]["type"] == "overloaded"


def kill(replica_name: str) -> None:
    import ray

    ray.kill(ray.get_actor(replica_name, namespace="serve"), no_restart=True)


async def test_a_stream_whose_replica_dies_ends_with_an_error_event_and_the_kept_turns_stay(deploy, sqlite_url):
    base = deploy(delay=0.4, database_url=sqlite_url, **SETTINGS)
    async with httpx.AsyncClient(base_url=base, timeout=120) as c:
        sid = (await c.post("/v1/sessions", json={"premise": PREMISE})).json()["id"]
        first = await c.post(f"/v1/sessions/{sid}/turns", json={"action": "She opens the letter."})
        assert first.status_code == 200
        events = []
        async with c.stream(
            "POST", f"/v1/sessions/{sid}/turns", json={"action": "She climbs."}, headers={"accept": "text/event-stream"}
        ) as r:
            text = ""
            async for chunk in r.aiter_text():
                text += chunk
                if "event: sentence" in text and not events:
                    events.append("killed")
                    kill(r.headers["x-ee-replica"])
        events = parse_sse(text)
        assert events[-1][0] == "error" and "beat" not in [e for e, _ in events]
        error = json.loads(events[-1][1])["error"]
        assert error["type"] == "replica_lost" and "again" in error["message"]
        # a new replica comes up; the acknowledged turn is there and the session plays on from it
        for _ in range(240):
            r = await c.get(f"/v1/sessions/{sid}")
            if r.status_code == 200:
                break
            await asyncio.sleep(0.5)
        assert [b["action"] for b in r.json()["beats"]] == ["She opens the letter."]
        r = await c.post(f"/v1/sessions/{sid}/turns", json={"action": "She climbs."})
        assert r.status_code == 200 and r.json()["index"] == 1
        assert r.headers["x-ee-replica"] != first.headers["x-ee-replica"]


@pytest.mark.services
async def test_models_and_sessions_keep_to_a_replica_and_a_dead_replicas_job_is_finished_by_another(
    postgres_url, deploy
):
    models = {"models": [{"name": "main", "builtin": True}, {"name": "kids", "builtin": True}], "default": "main"}
    base = deploy(
        replica={"num_replicas": 2},
        delay=0.3,
        database_url=postgres_url,
        job_lease_s=2.0,
        models=models,
        max_loaded_models=2,
        **SETTINGS,
    )
    async with httpx.AsyncClient(base_url=base, timeout=120) as c:
        # a model asked for by name is loaded by one replica, and the requests naming it go there
        served = set()
        for seed in range(8):
            r = await c.post("/v1/stories", json={"premise": PREMISE, "words": 150, "seed": seed, "model": "kids"})
            assert r.status_code == 200 and r.json()["provenance"]["model"] == "kids-weights", r.text
            served.add(r.headers["x-ee-replica"])
        assert len(served) == 1
        # and the other replica never loaded it (GET /v1/models, which no model routes, reaches both)
        kids_loaded = {}
        for _ in range(60):
            r = await c.get("/v1/models")
            [kids] = [m for m in r.json()["data"] if m["id"] == "kids"]
            kids_loaded[r.headers["x-ee-replica"]] = kids["engine"]["loaded"]
            if len(kids_loaded) == 2:
                break
        assert kids_loaded == {name: name in served for name in kids_loaded} and len(kids_loaded) == 2

        # sessions: every turn of one session on one replica, the sessions spread over both
        homes = {}
        for _ in range(6):
            sid = (await c.post("/v1/sessions", json={"premise": PREMISE})).json()["id"]
            served = set()
            for action in ("She opens the letter.", "She reads it twice."):
                r = await c.post(f"/v1/sessions/{sid}/turns", json={"action": action})
                assert r.status_code == 200, r.text
                served.add(r.headers["x-ee-replica"])
            assert len(served) == 1
            homes[sid] = served.pop()
        assert len(set(homes.values())) == 2

        r = await c.post("/v1/jobs", json={"premise": PREMISE, "words": 600, "seed": 5})
        assert r.status_code == 202
        job_id = r.json()["id"]
        job = await wait_for_job(c, job_id, lambda j: j["progress"]["scenes_done"] >= 1, timeout=60)
        assert job["status"] == "running"
        kill(r.headers["x-ee-replica"])  # the replica that accepted the job runs it: its lease now lapses
        job = await wait_for_job(c, job_id, lambda j: j["status"] == "done", timeout=90)
        assert len(job["story"]["scenes"]) == job["progress"]["scenes_total"] > job["progress"]["scenes_total"] - 1


def test_the_shipped_serve_config_is_what_serve_ray_runs():
    """deploy/serve.yaml (serve run, KubeRay) and `emotional-engine serve --ray` scale and shed alike."""
    from pathlib import Path

    import yaml

    from emotional_engine.service.ray_serve import EngineReplica, autoscaling

    config = yaml.safe_load((Path(__file__).parents[2] / "deploy" / "serve.yaml").read_text())
    [app] = config["applications"]
    engine = next(d for d in app["deployments"] if d["name"] == "EngineReplica")
    bounds = engine["autoscaling_config"]
    assert (
        engine["autoscaling_config"]
        == autoscaling(bounds["min_replicas"], bounds["max_replicas"])["autoscaling_config"]
    )
    assert engine["max_ongoing_requests"] == EngineReplica._deployment_config.max_ongoing_requests
    assert engine["max_queued_requests"] == EngineReplica._deployment_config.max_queued_requests
    assert app["import_path"] == "emotional_engine.service.ray_serve:build"
