"""POST /v1/stories/{id}/feedback and /v1/sessions/{id}/feedback: a 1-5 rating and a comment."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter

from emotional_engine.service.deps import KeyId, ServiceDep
from emotional_engine.service.errors import not_found
from emotional_engine.service.protocol import ErrorBody, FeedbackIn, FeedbackOut
from emotional_engine.service.routes.stories import ERRORS
from emotional_engine.service.storecalls import call

router = APIRouter(prefix="/v1", tags=["feedback"])


async def _add(service, kind: Literal["story", "session"], target_id: str, key_id: str, body: FeedbackIn):
    if await call(service, service.store.add_feedback, kind, target_id, key_id, body.rating, body.comment) is None:
        raise not_found(kind, target_id)
    service.metrics.feedback.observe(body.rating)
    return FeedbackOut()


@router.post(
    "/stories/{story_id}/feedback",
    response_model=FeedbackOut,
    status_code=201,
    responses=ERRORS | {404: {"model": ErrorBody}},
)
async def story_feedback(story_id: str, body: FeedbackIn, key_id: KeyId, service: ServiceDep):
    return await _add(service, "story", story_id, key_id, body)


@router.post(
    "/sessions/{session_id}/feedback",
    response_model=FeedbackOut,
    status_code=201,
    responses=ERRORS | {404: {"model": ErrorBody}},
)
async def session_feedback(session_id: str, body: FeedbackIn, key_id: KeyId, service: ServiceDep):
    return await _add(service, "session", session_id, key_id, body)
