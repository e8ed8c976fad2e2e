"""A live session's story memory, editable by its player: the facts (each beat's summary sentences and
what was read out of it: places, states, relations) listed, reworded and forgotten. Each beat's part
of the memory is kept in the store beside the beat, edits included, so a session rebuilt from the store
(after a restart, on another replica) recalls what it had."""

from __future__ import annotations

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from emotional_engine.domain import NonBlank
from emotional_engine.service.deps import KeyId, ServiceDep
from emotional_engine.service.errors import ApiError
from emotional_engine.service.routes.sessions import MORE, _live

router = APIRouter(prefix="/v1/sessions/{session_id}/memory", tags=["memory"])


class FactOut(BaseModel):
    index: int
    scene: int = Field(description="the beat it came from")
    kind: str = Field(
        description="event (a summary sentence), location, state, relation, attribute, knows, place, object"
    )
    text: str


class FactIn(BaseModel):
    text: NonBlank = Field(max_length=500, description="the fact as it should read")


@router.get("", response_model=list[FactOut], responses=MORE)
async def list_facts(session_id: str, key_id: KeyId, service: ServiceDep) -> list[FactOut]:
    async with service.sessions.lock(session_id):
        live = await _live(service, session_id, key_id)
        facts = await live.facts()
    return [FactOut(index=i, scene=f.scene, kind=f.kind, text=f.text) for i, f in enumerate(facts)]


@router.put("/{index}", response_model=FactOut, responses=MORE)
async def revise_fact(
    session_id: str, body: FactIn, key_id: KeyId, service: ServiceDep, index: int = Path(ge=0)
) -> FactOut:
    """Reword a fact (what is recalled into later turns)."""
    async with service.sessions.lock(session_id):
        live = await _live(service, session_id, key_id)
        try:
            f = await live.revise_fact(index, body.text)
        except IndexError:
            raise _no_fact(index) from None
    return FactOut(index=index, scene=f.scene, kind=f.kind, text=f.text)


@router.delete("/{index}", status_code=204, responses=MORE)
async def forget_fact(session_id: str, key_id: KeyId, service: ServiceDep, index: int = Path(ge=0)) -> None:
    """Forget a fact; where everyone is and who is alive are worked out again from the rest."""
    async with service.sessions.lock(session_id):
        live = await _live(service, session_id, key_id)
        try:
            await live.forget_fact(index)
        except IndexError:
            raise _no_fact(index) from None


def _no_fact(index: int) -> ApiError:
    return ApiError(404, "not_found", f"the session's memory has no fact {index}; GET .../memory lists them")
