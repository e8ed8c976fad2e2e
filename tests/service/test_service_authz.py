"""The authorisation matrix: every route that takes an id answers 404 to a key that does not own it,
and leaves the owner's story, job and session as they were. The routes are read from the app's OpenAPI, so a
new route with an id is in the matrix without being listed here."""

from __future__ import annotations

from fakes import harbour_generator

ENTRY = {"keys": ["door"], "content": "The door sticks."}
BODIES = {
    "feedback": {"rating": 4},
    "turns": {"action": "I open the door."},
    "lorebook": ENTRY,
    "{entry_id}": ENTRY,
    "swipes": {"n": 1},
    "{session_id}": {"author_note": "Quiet."},  # PATCH; GET and DELETE ignore it
    "{index}": {"text": "The door sticks."},
}


async def test_another_keys_ids_are_not_found_on_every_route(app_client, settings, make_key):
    other = make_key(settings, name="other")
    theirs = {"Authorization": f"Bearer {other}"}
    async with app_client(generator=harbour_generator(delay=0.05)) as c:
        ids = {
            "story_id": (await c.post("/v1/stories", json={"premise": "A kite festival.", "words": 80})).json()["id"],
            "job_id": (await c.post("/v1/jobs", json={"premise": "A kite.", "words": 600, "seed": 2})).json()["id"],
            "session_id": (
                await c.post("/v1/sessions", json={"premise": "A night ferry.", "lorebook": [ENTRY]})
            ).json()["id"],
            "entry_id": 1,
            "k": 0,
            "index": 0,
        }
        assert (await c.post(f"/v1/sessions/{ids['session_id']}/turns", json=BODIES["turns"])).status_code == 200
        paths = c.app.openapi()["paths"]
        routes = [(method.upper(), path) for path, ops in paths.items() if "{" in path for method in ops]
        assert len(routes) >= 10
        for method, path in routes:
            url = path.format(**ids)
            body = BODIES.get(path.rsplit("/", 1)[-1])
            r = await c.request(method, url, json=body, headers=theirs)
            assert r.status_code == 404, (method, path, r.status_code, r.text)
            assert r.json()["error"]["type"] == "not_found"
        # and nothing of the owner's changed
        assert (await c.get(f"/v1/stories/{ids['story_id']}")).status_code == 200
        assert (await c.get(f"/v1/jobs/{ids['job_id']}")).json()["status"] != "cancelled"
        session = (await c.get(f"/v1/sessions/{ids['session_id']}")).json()
        assert len(session["beats"]) == 1
