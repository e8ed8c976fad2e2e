"""POST /v1/stories (JSON, or the Engine's events over SSE; long stories become jobs), GET /v1/stories/{id}."""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sse_starlette.sse import EventSourceResponse

from emotional_engine.domain import StoryRequest
from emotional_engine.lm.models import UnknownModelError
from emotional_engine.service import serving
from emotional_engine.service.deps import KeyId, ServiceDep
from emotional_engine.service.errors import ApiError, not_found
from emotional_engine.service.protocol import ErrorBody, JobOut, StoryOut
from emotional_engine.service.storecalls import call

router = APIRouter(prefix="/v1/stories", tags=["stories"])
ERRORS = {401: {"model": ErrorBody}, 422: {"model": ErrorBody}, 429: {"model": ErrorBody}, 503: {"model": ErrorBody}}


@router.post(
    "",
    response_model=StoryOut,
    responses={
        **ERRORS,
        202: {"model": JobOut},
        200: {
            "content": {"text/event-stream": {}},
            "description": "the story, or its events with Accept: text/event-stream",
        },
    },
)
async def create_story(body: StoryRequest, request: Request, key_id: KeyId, service: ServiceDep):
    """A whole story. Stories over the job threshold are queued as a job (202 with its id)."""
    body = serving.with_model(service, body)
    if body.words > service.settings.job_words_threshold:
        job_id = await service.jobs.submit(key_id, body)
        return JSONResponse(
            JobOut(id=job_id, status="queued").model_dump(mode="json"),
            status_code=202,
            headers={"Location": f"/v1/jobs/{job_id}"},
        )
    if "text/event-stream" in request.headers.get("accept", ""):
        usage = await serving.begin(service, key_id, "story", body.words)
        ticket = await service.admission.acquire(key_id)  # 429/503 as a status, before the stream starts
        return EventSourceResponse(_events(service, key_id, body, usage, ticket), ping=15)
    cached = await serving.cached_story(service, key_id, body)
    if cached is not None:
        return Response(cached, media_type="application/json")
    story = await _unless_client_leaves(request, serving.generate_story(service, key_id, body))
    return Response(story, media_type="application/json")


CLIENT_CHECK_S = 0.5  # how often a whole-story request looks whether its client is still there


async def _unless_client_leaves(request: Request, work):
    """Await `work`, cancelling it when the client disconnects (nobody would read the story: the
    generation stops and its slot is freed, as a stream's does). Nothing is sent to a gone client."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=CLIENT_CHECK_S)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                raise asyncio.CancelledError("the client went away")
    finally:
        task.cancel()


async def _events(service, key_id: str, body: StoryRequest, usage, ticket):
    """plan, scene_started, text, scene_done ... story_done (with the story's id); generation stops
    when the client goes away (the response cancels this generator, which cancels the Engine's task)."""
    try:
        async for event in service.engine.stream(body):
            if event.kind == "checkpoint":
                continue
            if event.kind == "story_done":
                story_id, _ = await serving.keep_story(service, key_id, body, event.data)
                data = json.loads(serving.with_id(event.data.model_dump_json().encode(), story_id, False))
                yield {"event": "story_done", "data": json.dumps(data, ensure_ascii=False)}
                return
            yield {"event": event.kind, "data": serving.event_json(event)}
    except (ApiError, UnknownModelError) as e:
        yield serving.error_event(e)
    except Exception as e:
        yield serving.stream_failure(service, e)
    finally:
        ticket.release()
        await asyncio.shield(serving.account(service, key_id, usage))


@router.get("/{story_id}", response_model=StoryOut, responses=ERRORS | {404: {"model": ErrorBody}})
async def get_story(story_id: str, key_id: KeyId, service: ServiceDep):
    story = await call(service, service.store.get_story, story_id, key_id)
    if story is None:
        raise not_found("story", story_id)
    return Response(serving.with_id(json.dumps(story).encode(), story_id, False), media_type="application/json")
