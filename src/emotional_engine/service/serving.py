"""Story generation behind the routes: cache lookup, admission, metering, persistence."""

from __future__ import annotations

import asyncio
import json
import logging

from pydantic_core import to_jsonable_python

from emotional_engine.domain import Story, StoryRequest
from emotional_engine.lm.models import UnknownModelError
from emotional_engine.service import metering
from emotional_engine.service.errors import ApiError, ModelFailedError, error_body, model_failed, new_incident
from emotional_engine.service.state import Service
from emotional_engine.storage.cache import is_cacheable, request_cache_key
from emotional_engine.version import __version__

log = logging.getLogger(__name__)


TOKENS_PER_WORD = 2.0  # tokens written per word asked for (candidates, plan, rewrites): what is reserved


async def begin(service: Service, key_id: str, kind: str, words: int) -> metering.Usage:
    """Start counting a generation, its likely tokens reserved from the key's budget (429 if they do not fit)."""
    reservation = await service.limiter.reserve(key_id, int(words * TOKENS_PER_WORD))
    usage = metering.begin(kind)
    usage.reservation = reservation
    return usage


async def account(service: Service, key_id: str, usage: metering.Usage) -> None:
    """Charge a generation's tokens to the key (settling its reservation): its rate limit, and its stored usage."""
    if usage.reservation is not None:
        await service.limiter.settle(usage.reservation, usage.tokens)
    else:
        await service.limiter.add_tokens(key_id, usage.tokens)
    try:
        await asyncio.to_thread(service.store.record_usage, key_id, 1, usage.tokens)
    except Exception as e:  # usage is bookkeeping: a database outage must not fail the answer
        log.warning("usage not recorded: %s", e)


def with_model(service: Service, request: StoryRequest) -> StoryRequest:
    """`request` naming the model that serves it, so that a stored request (a job's, a session's)
    keeps its model; an unknown model raises `UnknownModelError` (a 422 listing the configured ones)."""
    return service.engine.pin_model(request)


async def cache_key(service: Service, request: StoryRequest) -> str | None:
    """None for requests without a seed: only deterministic requests are answered from the cache.
    The key holds the identity of the model that serves `request` (pinned by `with_model`; loaded
    first if need be: its file's hash is read as it loads), so two models never share a story."""
    body = request.model_dump(mode="json")
    if not is_cacheable(body):
        return None
    models = service.engine.models
    name = request.model
    await models.aget(name)
    model = models.identity(name)
    extra = {"engine": __version__, "model": model, "candidates": service.engine.candidates}
    return request_cache_key(body, model["sha256"] or f"{model['base_url']}/{model['model']}", extra)


def with_id(story_json: bytes, story_id: str | None, cached: bool) -> bytes:
    """The stored story JSON with `id` and `cached` in front, without parsing it again."""
    head = json.dumps({"id": story_id, "cached": cached})[:-1].encode()
    return head + b"," + story_json[1:]


async def save_story(service: Service, key_id: str, request: StoryRequest, story: dict) -> str | None:
    """The story's id, or None when the database is down (the caller still gets the story)."""
    try:
        return await asyncio.to_thread(service.store.save_story, key_id, request.model_dump(mode="json"), story)
    except Exception as e:
        log.warning("story not saved, database unavailable: %s", e)
        service.store_answered(False)
        return None


async def cached_story(service: Service, key_id: str, request: StoryRequest) -> bytes | None:
    key = await cache_key(service, request)
    if key is None:
        return None
    value, _level = await service.cache.aget(key)
    if value is None:
        return None
    # the same key asking again gets the same story under the same id: saved once, not on every hit
    story_id = service.cached_story_ids.get((key_id, key))
    if story_id is None:
        story_id = await save_story(service, key_id, request, json.loads(value))
        if story_id is not None:
            service.cached_story_ids[(key_id, key)] = story_id
    return with_id(value, story_id, cached=True)


async def generate_story(service: Service, key_id: str, request: StoryRequest, on_event=None) -> bytes:
    """Write the story (holding a generation slot), keep it, cache it; its JSON with `id`."""
    usage = await begin(service, key_id, "story", request.words)  # time to first token includes the wait
    async with service.admission.slot(key_id):
        try:
            story = await service.engine.agenerate(request, on_event)
        finally:
            await account(service, key_id, usage)
    return (await keep_story(service, key_id, request, story))[1]


async def keep_story(service: Service, key_id: str, request: StoryRequest, story: Story) -> tuple[str | None, bytes]:
    """Count, save and cache a written story: (its id, its JSON with `id`)."""
    service.metrics.observe_story(story)
    service.metrics.generations.labels("story").inc()
    story_json = story.model_dump_json().encode()
    story_id = await save_story(service, key_id, request, json.loads(story_json))
    key = await cache_key(service, request)
    if key is not None:
        await service.cache.aput(key, story_json)
        if story_id is not None:
            service.cached_story_ids[(key_id, key)] = story_id
    return story_id, with_id(story_json, story_id, cached=False)


def event_json(event) -> str:
    """An Engine event as an SSE data line (pydantic models and dataclasses to JSON)."""
    return json.dumps(to_jsonable_python(event.data), ensure_ascii=False)


def error_event(e: ApiError | UnknownModelError) -> dict:
    """The SSE error event for a failure the client can act on: the same type and message as the JSON error."""
    kind, message = ("unknown_model", f"model: {e}") if isinstance(e, UnknownModelError) else (e.type, e.message)
    param = None if isinstance(e, UnknownModelError) else e.param
    return {"event": "error", "data": json.dumps(error_body(kind, message, param=param))}


def stream_failure(service: Service, e: Exception) -> dict:
    """The SSE error event for an unexpected failure mid-stream (logged with an incident id): the model's
    failure as `model_failed` (retry), anything else as `internal`."""
    incident = new_incident()
    if isinstance(e, ModelFailedError):
        log.error("model failed mid-stream (incident %s)", incident, exc_info=e)
        kind, message = model_failed(incident)
    else:
        log.error("stream failed (incident %s)", incident, exc_info=e)
        kind = "internal"
        message = f"generation failed (incident {incident}); it is logged, try again or report the incident id"
    service.metrics.errors.labels(kind).inc()
    return {"event": "error", "data": json.dumps(error_body(kind, message, incident))}
