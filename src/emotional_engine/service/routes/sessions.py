"""Interactive sessions: create, play a turn (streamable), regenerate, continue, swipe or undo the last beat,
change the author's note and sampler settings, read, delete."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from sse_starlette.sse import EventSourceResponse

from emotional_engine.agents.character import build_cast
from emotional_engine.culture import load_profile
from emotional_engine.domain import StoryRequest
from emotional_engine.lm.models import UnknownModelError
from emotional_engine.service import serving
from emotional_engine.service.deps import KeyId, ServiceDep
from emotional_engine.service.errors import ApiError, not_found
from emotional_engine.service.protocol import (
    ActionIn,
    CharacterOut,
    ErrorBody,
    SessionChange,
    SessionCreate,
    SessionOut,
    SwipesIn,
)
from emotional_engine.service.routes.stories import ERRORS
from emotional_engine.service.storecalls import call
from emotional_engine.session import BEAT_WORDS, Beat

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])
MORE = ERRORS | {404: {"model": ErrorBody}, 410: {"model": ErrorBody, "description": "the session expired"}}


@router.post("", response_model=SessionOut, status_code=201, responses=ERRORS)
async def create_session(body: SessionCreate, key_id: KeyId, service: ServiceDep) -> SessionOut:
    request = serving.with_model(service, body).model_dump(mode="json")
    request["turns"] = body.turns or service.settings.session_turns
    s = service.settings
    session_id = await call(
        service, service.store.sessions.create, key_id, request, s.session_idle_ttl_s, s.max_sessions_per_key
    )
    return await _read(service, session_id, key_id)


@router.get("/{session_id}", response_model=SessionOut, responses=MORE)
async def get_session(session_id: str, key_id: KeyId, service: ServiceDep) -> SessionOut:
    return await _read(service, session_id, key_id)


@router.delete("/{session_id}", status_code=204, responses=MORE)
async def delete_session(session_id: str, key_id: KeyId, service: ServiceDep) -> None:
    if not await call(service, service.store.sessions.delete, session_id, key_id):
        raise not_found("session", session_id)
    service.sessions.drop(session_id)


@router.post(
    "/{session_id}/turns",
    response_model=Beat,
    responses=MORE
    | {
        200: {
            "content": {"text/event-stream": {}},
            "description": "the beat, or its sentences with Accept: text/event-stream",
        }
    },
)
async def play_turn(session_id: str, body: ActionIn, request: Request, key_id: KeyId, service: ServiceDep):
    """One action in, one beat out; the turn is committed before the beat is returned."""
    if not body.action.strip():
        raise ApiError(422, "invalid_request", "action: the action is empty")
    return await _turn(service, session_id, key_id, body.action, request, how="turn")


@router.post("/{session_id}/regenerate", response_model=Beat, responses=MORE)
async def regenerate(session_id: str, request: Request, key_id: KeyId, service: ServiceDep):
    """Write the last beat again from the same action (a new draw; with a seed, the same beat)."""
    return await _turn(service, session_id, key_id, None, request, how="regenerate")


@router.post("/{session_id}/continue", response_model=Beat, responses=MORE)
async def continue_beat(session_id: str, request: Request, key_id: KeyId, service: ServiceDep):
    """Write on from where the last beat stopped (streamable as a turn is); the beat grows."""
    return await _turn(service, session_id, key_id, None, request, how="continue")


@router.post("/{session_id}/swipes", response_model=list[Beat], responses=MORE)
async def swipes(session_id: str, body: SwipesIn, key_id: KeyId, service: ServiceDep) -> list[Beat]:
    """Other beats for the last action, none kept until one is chosen (`POST .../swipes/{k}`)."""
    usage = await serving.begin(service, key_id, "beat", BEAT_WORDS * body.n)
    async with service.admission.slot(key_id), service.sessions.lock(session_id):
        live = await _live(service, session_id, key_id)
        try:
            return await live.swipes(body.n)
        except ValueError as e:
            raise ApiError(409, "conflict", f"the session has no beat to swipe: {e}") from None
        finally:
            await serving.account(service, key_id, usage)


@router.post("/{session_id}/swipes/{k}", response_model=Beat, responses=MORE)
async def choose_swipe(session_id: str, k: int, key_id: KeyId, service: ServiceDep) -> Beat:
    """Swipe `k` in place of the last beat, kept."""
    async with service.sessions.lock(session_id):
        live = await _live(service, session_id, key_id)
        try:
            beat = await live.choose(k)
        except IndexError as e:
            raise ApiError(404, "not_found", str(e)) from None
        await call(service, service.store.sessions.replace_last_turn, session_id, key_id, beat.model_dump(mode="json"))
    return beat


@router.patch("/{session_id}", response_model=SessionOut, responses=MORE)
async def change_session(session_id: str, body: SessionChange, key_id: KeyId, service: ServiceDep) -> SessionOut:
    """The author's note and the sampler settings (a preset's name, or settings); the next turn takes them."""
    update = body.model_dump(exclude_unset=True, mode="json")
    if update.get("sampling", {}) is None:
        update.pop("sampling")  # null: unchanged (a preset's name sets them all)

    def change(request: dict) -> dict:
        StoryRequest.model_validate({**request, **update})  # refused before it is stored
        return {**request, **update}

    async with service.sessions.lock(session_id):
        stored = await call(service, service.store.sessions.change_request, session_id, key_id, change)
        service.sessions.take_request(session_id, StoryRequest.model_validate(stored))
    return await _read(service, session_id, key_id)


@router.post("/{session_id}/undo", response_model=SessionOut, responses=MORE)
async def undo(session_id: str, key_id: KeyId, service: ServiceDep) -> SessionOut:
    async with service.sessions.lock(session_id):
        if await call(service, service.store.sessions.pop_turn, session_id, key_id) is None:
            raise ApiError(409, "conflict", "the session has no beat to undo")
        service.sessions.drop(session_id)  # rebuilt from the store on the next turn
    return await _read(service, session_id, key_id)


async def _turn(service, session_id: str, key_id: str, action: str | None, request: Request, how: str):
    """A slot is taken first (429/503 as a status, before any stream starts), then the session's lock."""
    usage = await serving.begin(service, key_id, "beat", BEAT_WORDS)  # time to first token counts from here
    if "text/event-stream" in request.headers.get("accept", ""):
        await _record(service, session_id, key_id)  # 404 before the stream starts
        ticket = await service.admission.acquire(key_id)
        return EventSourceResponse(_stream(service, session_id, key_id, action, how, usage, ticket), ping=15)
    async with service.admission.slot(key_id):
        async for kind, data in _play(service, session_id, key_id, action, how, usage):
            if kind == "beat":
                return data


async def _stream(service, session_id, key_id, action, how, usage, ticket):
    try:
        async for kind, data in _play(service, session_id, key_id, action, how, usage):
            yield {"event": kind, "data": data.model_dump_json() if kind == "beat" else json.dumps(data)}
    except (ApiError, UnknownModelError) as e:
        yield serving.error_event(e)
    except Exception as e:
        yield serving.stream_failure(service, e)
    finally:
        ticket.release()


async def _play(service, session_id: str, key_id: str, action: str | None, how: str, usage):
    """("sentence", text) as the beat is written, then ("beat", Beat) once the turn is committed. `how`:
    a new `turn`, the last beat written again (`regenerate`) or written on (`continue`). The caller holds
    a generation slot."""
    async with service.sessions.lock(session_id):
        record = await _record(service, session_id, key_id)
        if record.status != "active":
            raise ApiError(
                410,
                "session_expired",
                f"session {session_id} expired after being idle; it can still be read, start a new session to play on",
            )
        turns = record.turns
        if how != "turn" and not turns:
            raise ApiError(409, "conflict", f"the session has no beat to {how}")
        if how == "regenerate":
            action, turns = turns[-1].action, turns[:-1]
        live = await _rebuilt(service, session_id, record.request, turns)
        try:
            writing = live.stream_continue() if how == "continue" else live.stream_turn(action)
            async for sentence in writing:
                yield "sentence", sentence
        finally:
            await serving.account(service, key_id, usage)
        beat = live.beats[-1]
        try:
            kept = beat.model_dump(mode="json")
            if how != "turn":  # the old beat goes in the same transaction that keeps its replacement
                await call(service, service.store.sessions.replace_last_turn, session_id, key_id, kept)
            else:
                await call(service, service.store.sessions.add_turn, session_id, key_id, action, kept)
        except ApiError:
            service.sessions.drop(session_id)  # not committed: the beat is not part of the story
            raise
        service.metrics.generations.labels("beat").inc()
    yield "beat", beat


async def _live(service, session_id: str, key_id: str):
    """The live session of a stored one that can be played (410 once it expired)."""
    record = await _record(service, session_id, key_id)
    if record.status != "active":
        raise ApiError(410, "session_expired", f"session {session_id} expired after being idle; start a new one")
    return await _rebuilt(service, session_id, record.request, record.turns)


async def _rebuilt(service, session_id: str, request: dict, turns: list):
    beats, parts = [t.beat for t in turns], [t.facts for t in turns]
    return await service.sessions.get(session_id, request, request.get("turns", 12), beats, parts)


async def _record(service, session_id: str, key_id: str):
    record = await call(service, service.store.sessions.get, session_id, key_id)
    if record is None:
        raise not_found("session", session_id)
    return record


async def _read(service, session_id: str, key_id: str) -> SessionOut:
    r = await _record(service, session_id, key_id)
    request = StoryRequest.model_validate(r.request)
    cast = build_cast(request, load_profile(request.culture))  # deterministic: the session's own cast
    beats = [Beat.model_validate(t.beat) for t in r.turns]
    return SessionOut(
        id=r.id,
        status=r.status,
        request=r.request,
        characters=[CharacterOut(name=c.name, role=c.role, pronouns=c.pronouns, traits=c.traits) for c in cast],
        beats=beats,
        text=" ".join(b.text for b in beats),
        arc=[b.measured.valence if b.measured else None for b in beats],
        created_at=r.created_at,
        last_active_at=r.last_active_at,
        expires_at=r.expires_at,
    )
