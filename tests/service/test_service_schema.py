"""Schemathesis against the OpenAPI schema on a live server, every operation in turn: no 500 on any
generated input, the only 5xx a 503 with Retry-After, every error a typed JSON body, and every
operation answered with a success at least once (ids that exist are made first and given to the
operations that take one; generated ids only find nothing)."""

import asyncio
import threading
from collections import defaultdict

import httpx
import schemathesis

# schemathesis.specs.openapi.adapter is imported here, at collection, not lazily inside the test: pytest
# rewrites schemathesis's modules as they are imported, and Python 3.11's AST constructor can fail
# there deep in a stack ("AST constructor recursion depth mismatch", pytest-dev/pytest#10763)
import schemathesis.specs.openapi.adapter  # noqa: F401
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings

from card_samples import card_blob, png_with
from fakes import harbour, harbour_generator

FIXED = {"deadline": None, "derandomize": True, "database": None, "suppress_health_check": list(HealthCheck)}
HOLD = "HOLD-THIS-JOB"  # a premise with it is written only once `released` is set: a job that stays running


def test_every_operation_answers_and_nothing_breaks_the_server(live_server, settings, make_key):
    s = settings.model_copy(
        update={
            "rate_limit_requests_per_min": 100_000,
            "rate_limit_tokens_per_min": 10**9,
            "job_words_threshold": 2000,
            "max_sessions_per_key": 10_000,
        }
    )
    released = threading.Event()

    async def write(call):
        while HOLD in str(call.prompt) and not released.is_set():
            await asyncio.sleep(0.02)
        return harbour(call)

    url, _ = live_server(s, generator=harbour_generator(write=write))
    auth = {"Authorization": f"Bearer {make_key(s)}"}
    try:
        ids = _make_ids(url, auth)
        _fuzz(url, auth, ids)
    finally:
        released.set()


def _make_ids(url: str, auth: dict) -> dict[str, dict[str, str]]:
    """Path parameters that exist, per operation label (those not listed take `default`)."""
    with httpx.Client(base_url=url, headers=auth, timeout=30) as c:

        def post(path, body=None, status=201):
            r = c.post(path, json=body)
            assert r.status_code == status, r.text
            return r.json()

        story = {"premise": "A ferry pilot finds a stowaway.", "words": 120, "seed": 1}
        session = {**story, "turns": 12, "lorebook": [{"keys": ["hatch"], "content": "The hatch sticks."}]}
        story_id = post("/v1/stories", story, 200)["id"]
        played, undone, deleted, unbooked, swiped = (post("/v1/sessions", session)["id"] for _ in range(5))
        for sid in (played, undone, swiped):
            post(f"/v1/sessions/{sid}/turns", {"action": "She opens the hatch."}, 200)
        post(f"/v1/sessions/{swiped}/swipes", {"n": 1}, 200)
        job_id = post("/v1/jobs", {**story, "premise": f"{HOLD} {story['premise']}", "words": 400}, 202)["id"]
    return {
        "default": {"story_id": story_id, "session_id": played, "job_id": job_id},
        # what undoes or deletes gets a session of its own, so the others still find theirs as it was
        "POST /v1/sessions/{session_id}/undo": {"session_id": undone},
        "DELETE /v1/sessions/{session_id}": {"session_id": deleted},
        "DELETE /v1/sessions/{session_id}/lorebook/{entry_id}": {"session_id": unbooked, "entry_id": "1"},
        "PUT /v1/sessions/{session_id}/lorebook/{entry_id}": {"session_id": played, "entry_id": "1"},
        "POST /v1/sessions/{session_id}/swipes/{k}": {"session_id": swiped, "k": "0"},
        "PUT /v1/sessions/{session_id}/memory/{index}": {"session_id": played, "index": "0"},
        "DELETE /v1/sessions/{session_id}/memory/{index}": {"session_id": swiped, "index": "0"},
    }


def _fuzz(url: str, auth: dict, ids: dict[str, dict[str, str]]) -> None:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    codes: dict[str, list[int]] = defaultdict(list)

    def check(case):
        r = case.call(base_url=url, headers=auth, timeout=30)
        codes[case.operation.label].append(r.status_code)
        body = r.content[:300].decode(errors="replace")  # a card comes back as a PNG
        where = f"{case.method} {case.formatted_path} -> {r.status_code}: {body}"
        assert r.status_code < 500 or (r.status_code == 503 and "retry-after" in r.headers), where
        if r.status_code >= 400:
            err = r.json()["error"]
            assert err["type"] and err["message"] and "Traceback" not in r.text, where

    for op in operations:
        takes = {p.name for p in op.path_parameters}
        real = {k: v for k, v in ids.get(op.label, ids["default"]).items() if k in takes}
        runs = [(op.as_strategy(path_parameters=real), 15)] + ([(op.as_strategy(), 5)] if takes else [])
        for strategy, examples in runs:  # ids that exist, then generated ones (which only find nothing)
            hsettings(max_examples=examples, **FIXED)(given(case=strategy)(check))()

    # a PNG card cannot come out of fuzzing random bytes: that operation is also called once with a real one
    png = httpx.post(f"{url}/v1/sessions/card/png", content=png_with(card_blob()), headers=auth, timeout=30)
    codes["POST /v1/sessions/card/png"].append(png.status_code)
    assert {op.label for op in operations} == set(codes)
    assert len(codes) >= 20  # the schema was read whole (stories, sessions, jobs, feedback, catalog, health)
    failed = {label: got for label, got in codes.items() if not any(200 <= c < 300 for c in got)}
    assert not failed, f"operations never answered with a success: {failed}"
