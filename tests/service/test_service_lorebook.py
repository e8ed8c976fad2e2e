"""A session's lorebook over HTTP: list, add, change, delete, what is refused, and an edit reaching the
next turn's prompt."""

from fakes import harbour_generator

SESSION = {"premise": "A night market in Osaka.", "culture": "ja-JP", "seed": 3}
KEY = {"keys": ["silver key"], "content": "The silver key opens the shrine's lower door.", "insertion_order": 5}


async def test_entries_are_listed_added_changed_and_deleted(app_client):
    async with app_client() as c:
        sid = (await c.post("/v1/sessions", json={**SESSION, "lorebook": [{**KEY, "name": "key"}]})).json()["id"]
        book = (await c.get(f"/v1/sessions/{sid}/lorebook")).json()
        assert [(e["name"], e["keys"]) for e in book] == [("key", ["silver key"])]
        added = await c.post(f"/v1/sessions/{sid}/lorebook", json={"content": "Bells at dusk.", "constant": True})
        assert added.status_code == 201 and added.json()["id"] == 1 + max(e["id"] or 0 for e in book)
        entry_id = added.json()["id"]
        changed = await c.put(f"/v1/sessions/{sid}/lorebook/{entry_id}", json={"keys": ["bell"], "content": "Bells."})
        assert changed.status_code == 200 and changed.json() == {**changed.json(), "keys": ["bell"], "id": entry_id}
        assert [e["content"] for e in (await c.get(f"/v1/sessions/{sid}/lorebook")).json()][-1] == "Bells."
        assert (await c.delete(f"/v1/sessions/{sid}/lorebook/{entry_id}")).status_code == 204
        assert [e["content"] for e in (await c.get(f"/v1/sessions/{sid}/lorebook")).json()] == [KEY["content"]]


async def test_what_is_refused_says_why(app_client, make_key):
    async with app_client() as c:
        sid = (await c.post("/v1/sessions", json=SESSION)).json()["id"]
        r = await c.post(f"/v1/sessions/{sid}/lorebook", json={"content": "no keys"})
        assert r.status_code == 422 and "needs keys" in r.json()["error"]["message"]
        r = await c.put(f"/v1/sessions/{sid}/lorebook/99", json=KEY)
        assert r.status_code == 404 and "lorebook entry '99'" in r.json()["error"]["message"]
        assert (await c.delete(f"/v1/sessions/{sid}/lorebook/99")).status_code == 404
        other = {"Authorization": f"Bearer {make_key(name='other')}"}
        assert (await c.get(f"/v1/sessions/{sid}/lorebook", headers=other)).status_code == 404


async def test_an_added_entry_reaches_the_next_turn_when_its_key_comes_up(app_client):
    gen = harbour_generator()
    async with app_client(generator=gen) as c:
        sid = (await c.post("/v1/sessions", json=SESSION)).json()["id"]
        await c.post(f"/v1/sessions/{sid}/turns", json={"action": "I follow the lanterns."})  # the session is live
        await c.post(f"/v1/sessions/{sid}/lorebook", json=KEY)
        await c.post(f"/v1/sessions/{sid}/turns", json={"action": "I look for the silver key."})
        assert "silver key opens the shrine" not in gen.streams[0].user  # added after the first turn
        assert "silver key opens the shrine" in gen.streams[-1].user
