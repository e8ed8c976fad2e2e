"""Character cards (V2, JSON or PNG): a session made from one, and a session's card to take elsewhere."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from emotional_engine import cards
from emotional_engine.domain import Audience
from emotional_engine.service.deps import KeyId, ServiceDep
from emotional_engine.service.errors import ApiError
from emotional_engine.service.protocol import SessionCreate, SessionOut
from emotional_engine.service.routes.sessions import MORE, _record, create_session
from emotional_engine.service.routes.stories import ERRORS

router = APIRouter(prefix="/v1/sessions", tags=["cards"])
PNG_BODY = {
    "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
    "description": "a PNG with a V2 character card in its chara text chunk",
    "required": True,
}


@dataclass
class CardSession:
    """The session settings a card does not carry, as query parameters of both card routes."""

    culture: str = "en-US"
    arc: str = "man_in_a_hole"
    audience: Audience = "adult"
    turns: int | None = Query(None, ge=2, le=500)
    seed: int | None = Query(None, ge=0, le=2**32 - 1)
    model: str | None = None


Options = Annotated[CardSession, Depends()]


@router.post("/card", response_model=SessionOut, status_code=201, responses=ERRORS)
async def session_from_card(card: cards.Card, options: Options, key_id: KeyId, service: ServiceDep) -> SessionOut:
    """A session whose protagonist, premise and lorebook come from a V2 card's JSON (see cards.py)."""
    return await _from_card(service, key_id, card, options)


@router.post(
    "/card/png", response_model=SessionOut, status_code=201, responses=ERRORS, openapi_extra={"requestBody": PNG_BODY}
)
async def session_from_png_card(request: Request, options: Options, key_id: KeyId, service: ServiceDep) -> SessionOut:
    """The same from a PNG card (the image's chara text chunk)."""
    try:
        card = cards.read(await request.body())
    except cards.CardError as e:
        raise ApiError(422, "invalid_card", f"the card is not valid: {e}") from None
    return await _from_card(service, key_id, card, options)


async def _from_card(service, key_id: str, card: cards.Card, options: CardSession) -> SessionOut:
    try:
        body = SessionCreate(**cards.session_fields(card), **asdict(options))
    except cards.CardError as e:
        raise ApiError(422, "invalid_card", f"the card does not fit a session: {e}") from None
    except ValidationError as e:
        err = e.errors()[0]
        raise ApiError(422, "invalid_request", f"{'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    return await create_session(body, key_id, service)


@router.get(
    "/{session_id}/card",
    responses=MORE | {200: {"content": {"application/json": {}, "image/png": {}}, "description": "the card"}},
)
async def session_card(
    session_id: str, key_id: KeyId, service: ServiceDep, format: Literal["json", "png"] = "json"
) -> Response:
    """The session's V2 card: the one it was made from with its lorebook as it is now, or a new one."""
    card = cards.from_session((await _record(service, session_id, key_id)).request)
    if format == "png":
        return Response(cards.to_png(card), media_type="image/png")
    return Response(cards.to_json(card), media_type="application/json")
