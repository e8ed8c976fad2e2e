"""Several language models over HTTP: GET /v1/models, routing per request and by rule, loading on
first use, unknown names, sessions and jobs keeping their model, and the cache kept apart per model."""

import asyncio
import json
from collections import Counter

import pytest

from emotional_engine.config import ModelCatalog
from fakes import ModelInfo, harbour_generator

CATALOG = {
    "models": [{"name": "plain", "builtin": True}, {"name": "kids", "builtin": True}, {"name": "ja", "builtin": True}],
    "rules": [{"audience": "children", "model": "kids"}, {"culture": "ja", "model": "ja"}],
}
OPTIMIZED = {"parent": {"sha256": "p" * 64}, "steps": [{"step": "quantise", "recipe": "Q4_0"}]}
STORY = {"premise": "A fisherman's daughter saves the harbour.", "words": 150, "seed": 5}


@pytest.fixture
def models(settings):
    """(settings with three models, a loader of fakes, the fakes it loaded by name, its load counts)"""
    fakes, loads = {}, Counter()

    def load(spec):
        loads[spec.name] += 1
        made = OPTIMIZED if spec.name == "kids" else None  # as `emotional-engine optimize` records it
        g = fakes[spec.name] = harbour_generator(
            0.01, info=ModelInfo("fake", f"{spec.name}-weights", sha256=spec.name[0] * 64, optimized=made)
        )
        return g

    return settings.model_copy(update={"models": ModelCatalog.model_validate(CATALOG)}), load, fakes, loads


async def test_the_catalog_shows_each_model_loading_on_first_use(app_client, models):
    s, load, fakes, loads = models
    async with app_client(s, load_model=load) as c:
        before = {m["id"]: m["engine"] for m in (await c.get("/v1/models")).json()["data"]}
        assert list(before) == ["plain", "kids", "ja"] and list(fakes) == ["plain"]  # the default loads at start
        assert before["plain"] | {"rules": None} == {
            "name": "plain",
            "backend": "fake",
            "model": "plain-weights",
            "sha256": "p" * 64,
            "weight_format": None,
            "context_length": None,
            "optimized": None,
            "loaded": True,
            "default": True,
            "rules": None,
        }
        assert before["kids"] == {
            "name": "kids",
            "backend": "builtin",
            "model": None,
            "sha256": None,
            "weight_format": None,
            "context_length": None,
            "optimized": None,
            "loaded": False,
            "default": False,
            "rules": [{"audience": "children", "culture": None}],
        }
        assert before["ja"]["rules"] == [{"audience": None, "culture": "ja"}] and not before["ja"]["loaded"]

        # two first uses at once: the model loads once
        rs = await asyncio.gather(
            *(c.post("/v1/stories", json={**STORY, "audience": "children", "seed": i}) for i in (1, 2))
        )
        assert [r.status_code for r in rs] == [200, 200]
        assert {r.json()["provenance"]["model"] for r in rs} == {"kids-weights"}
        assert all(r.json()["provenance"]["model_optimized"] == OPTIMIZED for r in rs)
        assert loads == {"plain": 1, "kids": 1} and fakes["kids"].streams and fakes["plain"].calls == []

        after = {m["id"]: m["engine"] for m in (await c.get("/v1/models")).json()["data"]}
        assert after["kids"]["loaded"] and after["kids"]["sha256"] == "k" * 64 and not after["ja"]["loaded"]
        assert after["kids"]["optimized"] == OPTIMIZED and after["plain"]["optimized"] is None
        assert (await c.get("/readyz")).json() == {"status": "ready", "degraded": []}


async def test_a_named_model_beats_the_rules_and_the_rules_beat_the_default(app_client, models):
    s, load, fakes, loads = models
    async with app_client(s, load_model=load) as c:
        r = await c.post("/v1/stories", json={**STORY, "audience": "children", "culture": "ja-JP", "model": "plain"})
        assert r.json()["provenance"]["model"] == "plain-weights" and set(fakes) == {"plain"}
        r = await c.post("/v1/stories", json={**STORY, "culture": "ja-JP"})
        assert r.json()["provenance"]["model"] == "ja-weights" and set(fakes) == {"plain", "ja"}
        r = await c.post("/v1/stories", json={**STORY, "culture": "en-GB"})
        assert r.json()["provenance"]["model"] == "plain-weights" and "kids" not in fakes


@pytest.mark.parametrize("path", ["/v1/stories", "/v1/jobs", "/v1/sessions"])
async def test_an_unknown_model_is_a_422_naming_the_models(app_client, models, path):
    s, load, fakes, _ = models
    async with app_client(s, load_model=load) as c:
        r = await c.post(path, json={**STORY, "model": "huge"})
        assert r.status_code == 422
        assert r.json()["error"] == {
            "type": "unknown_model",
            "code": "unknown_model",
            "param": None,
            "message": ("model: no model 'huge' is configured; available: plain, kids, ja"),
        }
        assert set(fakes) == {"plain"}


async def test_an_unknown_model_is_refused_before_a_stream_starts(app_client, models):
    s, load, _, _ = models
    async with app_client(s, load_model=load) as c:
        r = await c.post("/v1/stories", json={**STORY, "model": "huge"}, headers={"Accept": "text/event-stream"})
        assert r.status_code == 422 and r.json()["error"]["type"] == "unknown_model"


async def test_a_session_keeps_its_model_for_every_turn(app_client, models):
    s, load, fakes, _ = models
    async with app_client(s, load_model=load) as c:
        session = (await c.post("/v1/sessions", json={"premise": "A night market.", "audience": "children"})).json()
        assert session["request"]["model"] == "kids"  # the rule's choice, stored with the session
        for action in ("I follow the lanterns.", "I call out."):
            r = await c.post(f"/v1/sessions/{session['id']}/turns", json={"action": action})
            assert r.status_code == 200, r.text
        assert len(fakes["kids"].streams) >= 2 and fakes["plain"].calls == []


async def test_a_job_writes_with_its_model(app_client, models):
    s, load, fakes, _ = models
    async with app_client(s, load_model=load) as c:
        job_id = (await c.post("/v1/jobs", json={**STORY, "words": 600, "model": "ja"})).json()["id"]
        for _ in range(400):
            job = (await c.get(f"/v1/jobs/{job_id}")).json()
            if job["status"] in ("done", "failed"):
                break
            await asyncio.sleep(0.05)
        assert job["status"] == "done", job
        assert job["story"]["provenance"]["model"] == "ja-weights"
        assert fakes["ja"].streams and fakes["plain"].calls == []


async def test_two_models_never_share_a_cached_story(app_client, models):
    s, load, fakes, _ = models
    async with app_client(s, load_model=load) as c:
        plain = (await c.post("/v1/stories", json={**STORY, "model": "plain"})).json()
        kids = (await c.post("/v1/stories", json={**STORY, "model": "kids"})).json()
        assert plain["cached"] is False and kids["cached"] is False  # same request and seed, other model
        assert kids["provenance"]["model"] == "kids-weights"
        calls = len(fakes["kids"].calls)
        again = (await c.post("/v1/stories", json={**STORY, "model": "kids"})).json()
        assert again["cached"] is True and again["id"] == kids["id"] and len(fakes["kids"].calls) == calls
        # the default, unnamed, is the same model as naming it: its cached story
        assert (await c.post("/v1/stories", json=STORY)).json()["id"] == plain["id"]


async def test_the_cache_key_holds_the_model_identity(settings):
    from types import SimpleNamespace

    from emotional_engine.domain import StoryRequest
    from emotional_engine.engine import Engine
    from emotional_engine.lm.models import ModelManager
    from emotional_engine.service.serving import cache_key

    async def key(catalog: dict, sha: str, **request) -> str:
        def load(spec):
            return harbour_generator(info=ModelInfo("fake", "same-weights", sha256=sha))

        models = ModelManager(ModelCatalog.model_validate(catalog), load)
        service = SimpleNamespace(engine=Engine(settings, models=models))
        return await cache_key(service, service.engine.pin_model(StoryRequest(**STORY, **request)))

    base = await key(CATALOG, "a" * 64, audience="children")
    assert base == await key(CATALOG, "a" * 64, audience="children")
    assert base != await key(CATALOG, "b" * 64, audience="children")  # the same name, other weights
    assert base != await key({**CATALOG, "rules": []}, "a" * 64, audience="children")  # another model, same weights


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_session_whose_model_is_no_longer_configured_says_so(app_client, models, make_key, streamed):
    s, load, _, _ = models
    key = make_key(s)
    async with app_client(s, key=key, load_model=load) as c:
        sid = (await c.post("/v1/sessions", json={"premise": "A night market.", "model": "kids"})).json()["id"]
    fewer = s.model_copy(update={"models": ModelCatalog.model_validate({"models": CATALOG["models"][:1]})})
    message = "model: no model 'kids' is configured; available: plain"
    expected = {"type": "unknown_model", "message": message, "code": "unknown_model", "param": None}
    async with app_client(fewer, key=key, load_model=load) as c:  # restarted without the session's model
        if not streamed:
            r = await c.post(f"/v1/sessions/{sid}/turns", json={"action": "I run."})
            assert r.status_code == 422 and r.json()["error"] == expected
            return
        r = await c.post(
            f"/v1/sessions/{sid}/turns", json={"action": "I run."}, headers={"Accept": "text/event-stream"}
        )
        events = [line for line in r.text.splitlines() if line.startswith(("event:", "data:"))]
        assert events[0] == "event: error"  # the typed error as an SSE event
        assert json.loads(events[1].removeprefix("data:"))["error"] == expected
