"""Interactive sessions over HTTP: turns (plain and streamed), undo, regenerate, read, isolation, expiry."""

import asyncio
import json

import httpx

from emotional_engine.storage import Store
from service_helpers import parse_sse

SESSION = {"premise": "A night market in Osaka.", "culture": "ja-JP", "seed": 3}


async def test_turns_undo_regenerate_and_read(app_client):
    async with app_client() as c:
        r = await c.post("/v1/sessions", json=SESSION)
        assert r.status_code == 201, r.text
        s = r.json()
        assert s["status"] == "active" and len(s["characters"]) == 3 and s["beats"] == []
        b1 = await c.post(f"/v1/sessions/{s['id']}/turns", json={"action": "I follow the lanterns."})
        assert b1.status_code == 200, b1.text
        assert b1.json()["index"] == 0 and b1.json()["text"].startswith("The harbour woke")
        b2 = (await c.post(f"/v1/sessions/{s['id']}/turns", json={"action": "I call out to Mira."})).json()
        assert b2["index"] == 1
        got = (await c.get(f"/v1/sessions/{s['id']}")).json()
        assert [b["action"] for b in got["beats"]] == ["I follow the lanterns.", "I call out to Mira."]
        assert len(got["arc"]) == 2 and got["text"].count("harbour") == 2
        undone = (await c.post(f"/v1/sessions/{s['id']}/undo")).json()
        assert len(undone["beats"]) == 1
        again = (await c.post(f"/v1/sessions/{s['id']}/regenerate")).json()
        assert again["index"] == 0 and again["action"] == "I follow the lanterns."
        got = (await c.get(f"/v1/sessions/{s['id']}")).json()
        assert len(got["beats"]) == 1
        assert (await c.delete(f"/v1/sessions/{s['id']}")).status_code == 204
        assert (await c.get(f"/v1/sessions/{s['id']}")).status_code == 404


async def test_a_session_continues_after_a_restart(app_client, make_key):
    key = make_key()
    async with app_client(key=key) as c:
        sid = (await c.post("/v1/sessions", json=SESSION)).json()["id"]
        await c.post(f"/v1/sessions/{sid}/turns", json={"action": "I follow the lanterns."})
    async with app_client(key=key) as c:
        b = (await c.post(f"/v1/sessions/{sid}/turns", json={"action": "I run."})).json()
        assert b["index"] == 1  # rebuilt from the stored turns


async def test_a_key_cannot_play_another_keys_session(app_client, make_key):
    other = make_key(name="other")
    async with app_client() as c:
        sid = (await c.post("/v1/sessions", json=SESSION)).json()["id"]
        h = {"Authorization": f"Bearer {other}"}
        for r in (
            await c.get(f"/v1/sessions/{sid}", headers=h),
            await c.post(f"/v1/sessions/{sid}/turns", json={"action": "x"}, headers=h),
            await c.delete(f"/v1/sessions/{sid}", headers=h),
        ):
            assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"


async def test_an_idle_session_expires_and_stays_readable(app_client, settings):
    s = settings.model_copy(update={"session_idle_ttl_s": 1})
    async with app_client(s) as c:
        sid = (await c.post("/v1/sessions", json=SESSION)).json()["id"]
        await c.post(f"/v1/sessions/{sid}/turns", json={"action": "I follow the lanterns."})
        await asyncio.sleep(1.2)
        r = await c.post(f"/v1/sessions/{sid}/turns", json={"action": "I run."})
        assert r.status_code == 410 and r.json()["error"]["type"] == "session_expired"
        got = (await c.get(f"/v1/sessions/{sid}")).json()
        assert got["status"] == "expired" and len(got["beats"]) == 1


async def test_empty_action_is_refused(app_client):
    async with app_client() as c:
        sid = (await c.post("/v1/sessions", json=SESSION)).json()["id"]
        r = await c.post(f"/v1/sessions/{sid}/turns", json={"action": "   "})
        assert r.status_code == 422 and "empty" in r.json()["error"]["message"]


async def test_a_streamed_turn_sends_sentences_then_the_committed_beat(live_server, make_key, settings):
    url, app = live_server()
    key = make_key()
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
        sid = (await c.post("/v1/sessions", json=SESSION)).json()["id"]
        async with c.stream(
            "POST",
            f"/v1/sessions/{sid}/turns",
            json={"action": "I follow the lanterns."},
            headers={"Accept": "text/event-stream"},
        ) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            events = parse_sse((await r.aread()).decode())
        kinds = [k for k, _ in events]
        assert kinds[0] == "sentence" and kinds[-1] == "beat" and kinds.count("beat") == 1
        beat = json.loads(events[-1][1])
        assert beat["text"].startswith(json.loads(events[0][1]).strip())
        store = Store.from_settings(settings)
        (key_info,) = store.list_keys()
        assert len(store.sessions.get(sid, key_info.id).turns) == 1  # committed before the beat was sent
        store.close()


async def test_a_regenerate_whose_new_beat_cannot_be_stored_keeps_the_old_one(app_client):
    from sqlalchemy import event
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.orm import Session

    from emotional_engine.storage.schema import TurnRow

    def refuse_new_beats(session, context, instances):  # the database fails as the new beat is written
        if any(isinstance(o, TurnRow) for o in [*session.new, *session.dirty]):
            raise OperationalError("UPDATE turns", {}, Exception("disk I/O error"))

    async with app_client() as c:
        sid = (await c.post("/v1/sessions", json=SESSION)).json()["id"]
        old = (await c.post(f"/v1/sessions/{sid}/turns", json={"action": "I follow the lanterns."})).json()
        event.listen(Session, "before_flush", refuse_new_beats)
        try:
            r = await c.post(f"/v1/sessions/{sid}/regenerate")
        finally:
            event.remove(Session, "before_flush", refuse_new_beats)
        assert r.status_code == 503
        beats = (await c.get(f"/v1/sessions/{sid}")).json()["beats"]
        assert [b["text"] for b in beats] == [old["text"]]  # popping it first lost it


async def test_continue_swipes_and_the_players_settings(app_client):
    async with app_client() as c:
        sid = (await c.post("/v1/sessions", json=SESSION)).json()["id"]
        assert (await c.post(f"/v1/sessions/{sid}/continue")).status_code == 409  # nothing to continue yet
        first = (await c.post(f"/v1/sessions/{sid}/turns", json={"action": "I follow the lanterns."})).json()
        grown = (await c.post(f"/v1/sessions/{sid}/continue")).json()
        assert (
            grown["index"] == 0 and grown["text"].startswith(first["text"]) and len(grown["text"]) > len(first["text"])
        )
        assert (await c.get(f"/v1/sessions/{sid}")).json()["beats"][0]["text"] == grown["text"]  # kept
        alternatives = (await c.post(f"/v1/sessions/{sid}/swipes", json={"n": 2})).json()
        assert len(alternatives) == 2 and all(b["action"] == "I follow the lanterns." for b in alternatives)
        assert (await c.get(f"/v1/sessions/{sid}")).json()["beats"][0]["text"] == grown["text"]  # none kept yet
        assert (await c.post(f"/v1/sessions/{sid}/swipes/7")).status_code == 404
        chosen = (await c.post(f"/v1/sessions/{sid}/swipes/1")).json()
        assert chosen == alternatives[1] and (await c.get(f"/v1/sessions/{sid}")).json()["beats"] == [chosen]
        changed = await c.patch(f"/v1/sessions/{sid}", json={"author_note": "Quiet.", "sampling": "creative"})
        assert changed.status_code == 200 and changed.json()["request"]["author_note"] == "Quiet."
        assert changed.json()["request"]["sampling"]["temperature"] == 1.0
        bad = await c.patch(f"/v1/sessions/{sid}", json={"sampling": "spicy"})
        assert bad.status_code == 422 and "sampling" in bad.json()["error"]["message"]


async def test_the_player_reads_rewords_and_forgets_the_sessions_memory(app_client):
    async with app_client() as c:
        sid = (await c.post("/v1/sessions", json=SESSION)).json()["id"]
        await c.post(f"/v1/sessions/{sid}/turns", json={"action": "I follow the lanterns."})
        facts = (await c.get(f"/v1/sessions/{sid}/memory")).json()
        assert facts and all(f["scene"] == 0 for f in facts) and [f["index"] for f in facts] == list(range(len(facts)))
        revised = await c.put(f"/v1/sessions/{sid}/memory/0", json={"text": "The lanterns were blue."})
        assert revised.status_code == 200 and revised.json()["text"] == "The lanterns were blue."
        assert (await c.delete(f"/v1/sessions/{sid}/memory/0")).status_code == 204
        after = (await c.get(f"/v1/sessions/{sid}/memory")).json()
        assert len(after) == len(facts) - 1 and "The lanterns were blue." not in [f["text"] for f in after]
        missing = await c.delete(f"/v1/sessions/{sid}/memory/{len(after)}")
        assert missing.status_code == 404 and "no fact" in missing.json()["error"]["message"]


async def test_the_memory_and_the_players_edits_outlive_a_restart(app_client, make_key, settings):
    key = make_key()
    async with app_client(key=key) as c:
        sid = (await c.post("/v1/sessions", json=SESSION)).json()["id"]
        await c.post(f"/v1/sessions/{sid}/turns", json={"action": "I follow the lanterns."})
        await c.post(f"/v1/sessions/{sid}/turns", json={"action": "I call out to Mira."})
        before = (await c.get(f"/v1/sessions/{sid}/memory")).json()
        await c.put(f"/v1/sessions/{sid}/memory/0", json={"text": "The lanterns were blue."})
        await c.delete(f"/v1/sessions/{sid}/memory/1")
    expected = [{**before[0], "text": "The lanterns were blue."}, *before[2:]]
    async with app_client(key=key) as c:  # another server: the session is rebuilt from the store
        after = (await c.get(f"/v1/sessions/{sid}/memory")).json()
        assert [(f["scene"], f["kind"], f["text"]) for f in after] == [
            (f["scene"], f["kind"], f["text"]) for f in expected
        ]
    store = Store.from_settings(settings)
    try:
        kept = [t.facts for t in store.sessions.get(sid, store.verify_key(key).id).turns]
    finally:
        store.close()
    assert all(part and part["text_sha256"] for part in kept)
