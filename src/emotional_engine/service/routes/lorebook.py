"""A session's lorebook (world info): list, add, change and delete entries. An entry's content is
recalled into the turn whose action or last beat names one of its keys (session.py); an edit takes
effect from the next turn."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import ValidationError

from emotional_engine.domain import LoreEntry, StoryRequest
from emotional_engine.service.deps import KeyId, ServiceDep
from emotional_engine.service.errors import ApiError, not_found
from emotional_engine.service.routes.sessions import MORE, _record
from emotional_engine.service.storecalls import call

router = APIRouter(prefix="/v1/sessions/{session_id}/lorebook", tags=["lorebook"])


@router.get("", response_model=list[LoreEntry], responses=MORE)
async def list_entries(session_id: str, key_id: KeyId, service: ServiceDep) -> list[LoreEntry]:
    record = await _record(service, session_id, key_id)
    return StoryRequest.model_validate(record.request).lorebook


@router.post("", response_model=LoreEntry, status_code=201, responses=MORE)
async def add_entry(session_id: str, entry: LoreEntry, key_id: KeyId, service: ServiceDep) -> LoreEntry:
    added = {}

    def change(request: dict) -> dict:
        book = request.get("lorebook", [])
        entry_id = 1 + max((e.get("id") or 0 for e in book), default=0)
        added.update(entry.model_copy(update={"id": entry_id}).model_dump(mode="json"))
        return _valid({**request, "lorebook": [*book, added]})

    await _change(service, session_id, key_id, change)
    return LoreEntry.model_validate(added)


@router.put("/{entry_id}", response_model=LoreEntry, responses=MORE)
async def change_entry(session_id: str, entry_id: int, entry: LoreEntry, key_id: KeyId, service: ServiceDep):
    new = entry.model_copy(update={"id": entry_id}).model_dump(mode="json")

    def change(request: dict) -> dict:
        book = request.get("lorebook", [])
        if not any(e.get("id") == entry_id for e in book):
            raise not_found("lorebook entry", str(entry_id))
        return _valid({**request, "lorebook": [new if e.get("id") == entry_id else e for e in book]})

    await _change(service, session_id, key_id, change)
    return LoreEntry.model_validate(new)


@router.delete("/{entry_id}", status_code=204, responses=MORE)
async def delete_entry(session_id: str, entry_id: int, key_id: KeyId, service: ServiceDep) -> None:
    def change(request: dict) -> dict:
        book = request.get("lorebook", [])
        if not any(e.get("id") == entry_id for e in book):
            raise not_found("lorebook entry", str(entry_id))
        return {**request, "lorebook": [e for e in book if e.get("id") != entry_id]}

    await _change(service, session_id, key_id, change)


def _valid(request: dict) -> dict:
    """The stored request, checked whole (a book past its size limit is refused) and kept as it is: a
    session's request holds more than a story's (its turns, the card it came from)."""
    try:
        StoryRequest.model_validate(request)
        return request
    except ValidationError as e:
        err = e.errors()[0]
        raise ApiError(422, "invalid_request", f"{'.'.join(map(str, err['loc']))}: {err['msg']}") from None


async def _change(service, session_id: str, key_id: str, change) -> None:
    async with service.sessions.lock(session_id):  # not while a turn is being written
        request = await call(service, service.store.sessions.change_request, session_id, key_id, change)
        service.sessions.take_request(session_id, StoryRequest.model_validate(request))
