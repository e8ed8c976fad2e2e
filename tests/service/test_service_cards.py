"""Character cards over HTTP: a session made from a card (JSON or PNG), its card exported after a lorebook
edit, and a card that fails validation refused with the field named."""

from card_samples import card_blob, png_with
from emotional_engine import cards


async def test_a_session_is_made_from_a_card_and_gives_it_back_with_its_edits(app_client):
    async with app_client() as c:
        r = await c.post("/v1/sessions/card?culture=en-GB&arc=icarus", json=card_blob())
        assert r.status_code == 201, r.text
        s = r.json()
        assert s["characters"][0]["name"] == "Ines Varga" and s["request"]["arc"] == "icarus"
        assert s["request"]["premise"].startswith("Ines finds a letter")
        book = (await c.get(f"/v1/sessions/{s['id']}/lorebook")).json()
        assert any(e["keys"] == ["Veil", "storm wall"] for e in book)
        beat = await c.post(f"/v1/sessions/{s['id']}/turns", json={"action": "I walk to the storm wall."})
        assert beat.status_code == 200
        await c.post(f"/v1/sessions/{s['id']}/lorebook", json={"keys": ["Tomas"], "content": "Tomas is the brother."})
        exported = (await c.get(f"/v1/sessions/{s['id']}/card")).json()
        entries = exported["data"]["character_book"]["entries"]
        assert entries[0] == card_blob()["data"]["character_book"]["entries"][0] and entries[1]["keys"] == ["Tomas"]
        png = await c.get(f"/v1/sessions/{s['id']}/card?format=png")
        assert png.headers["content-type"] == "image/png" and cards.read(png.content).data.name == "Ines Varga"


async def test_a_png_card_makes_a_session_and_a_bad_card_names_its_field(app_client):
    async with app_client() as c:
        r = await c.post("/v1/sessions/card/png", content=png_with(card_blob()), headers={"Content-Type": "image/png"})
        assert r.status_code == 201 and r.json()["characters"][0]["name"] == "Ines Varga"
        bad = card_blob()
        bad["data"]["character_book"]["entries"][0]["keys"] = "Veil"
        r = await c.post("/v1/sessions/card", json=bad)
        assert r.status_code == 422 and "data.character_book.entries.0.keys" in r.json()["error"]["message"]
        r = await c.post("/v1/sessions/card/png", content=png_with(bad), headers={"Content-Type": "image/png"})
        assert r.status_code == 422 and r.json()["error"]["type"] == "invalid_card"
        assert "data.character_book.entries.0.keys" in r.json()["error"]["message"]
        r = await c.post("/v1/sessions/card/png", content=b"not a png")
        assert r.status_code == 422 and "not JSON (nor a PNG" in r.json()["error"]["message"]
        r = await c.post("/v1/sessions/card?culture=xx-XX", json=card_blob())
        assert r.status_code == 422 and r.json()["error"]["message"].startswith("culture")
