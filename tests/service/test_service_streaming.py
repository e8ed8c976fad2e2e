"""Stories streamed over SSE against a real uvicorn server: the events end to end, and a client that
goes away stops the generation."""

import asyncio
import json

import httpx
import pytest

from fakes import harbour_generator
from service_helpers import parse_sse

STORY = {"premise": "A fisherman's daughter saves the harbour.", "words": 300, "seed": 5}


async def test_story_events_stream_end_to_end(live_server, make_key):
    url, _ = live_server()
    key = make_key()
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
        async with c.stream("POST", "/v1/stories", json=STORY, headers={"Accept": "text/event-stream"}) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            events = parse_sse((await r.aread()).decode())
        kinds = [k for k, _ in events]
        assert kinds[0] == "plan" and kinds[1] == "scene_started" and kinds[-1] == "story_done"
        assert "checkpoint" not in kinds and kinds.count("scene_done") == kinds.count("scene_started") >= 2
        story = json.loads(events[-1][1])
        assert story["id"] and story["text"]
        assert (await c.get(f"/v1/stories/{story['id']}")).json()["text"] == story["text"]


async def test_a_client_that_disconnects_stops_the_generation(live_server, make_key):
    gen = harbour_generator(delay=0.15)
    url, app = live_server(generator=gen)
    key = make_key()
    long_story = {**STORY, "words": 400}  # several scenes, each a few of the generator's delays
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
        async with c.stream("POST", "/v1/stories", json=long_story, headers={"Accept": "text/event-stream"}) as r:
            lines = []
            async for line in r.aiter_lines():
                lines.append(line)
                if line.startswith("event: scene_done"):
                    break  # leave after the first scene
        scenes = len(json.loads(parse_sse("\n".join(lines))[0][1])["scenes"])
        await asyncio.sleep(0.5)
        calls = len(gen.calls)
        await asyncio.sleep(1.0)
        assert len(gen.calls) == calls  # nothing more was generated
        assert scenes >= 3 and len(gen.streams) <= 2 * 2  # at most the scene in flight was written, not the story
        assert app.state.service.admission.running == 0  # the slot was given back


async def test_a_client_that_gives_up_on_a_whole_story_stops_the_generation(live_server, make_key):
    gen = harbour_generator(delay=0.15)
    url, app = live_server(generator=gen)
    key = make_key()
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=1.5) as c:
        with pytest.raises(httpx.ReadTimeout):
            await c.post("/v1/stories", json={**STORY, "words": 400})  # a few seconds of work
    await asyncio.sleep(1.0)
    calls = len(gen.calls)
    await asyncio.sleep(1.0)
    assert len(gen.calls) == calls  # nothing more was generated
    assert app.state.service.admission.running == 0  # the slot was given back
