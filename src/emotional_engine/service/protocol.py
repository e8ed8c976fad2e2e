"""Request and response bodies of the HTTP API (the logic lives in the routers and `serving`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from emotional_engine.cards import Card
from emotional_engine.domain import Story, StoryRequest, StorySampling
from emotional_engine.session import Beat


class ErrorDetail(BaseModel):
    type: str = Field(description="machine-readable kind, e.g. rate_limited, not_found, invalid_request")
    message: str = Field(description="what went wrong and what to do about it")
    code: str | None = Field(None, description="the same as type (OpenAI's clients read it here)")
    param: str | None = Field(None, description="the request field at fault, where one is")
    incident: str | None = Field(
        None, description="for a failure on our side: quote it in a report (the detail is logged)"
    )


class ErrorBody(BaseModel):
    error: ErrorDetail


class StoryOut(Story):
    id: str | None = Field(description="the story's id; null when the database was unreachable (not kept)")
    cached: bool = Field(False, description="answered from the cache (a repeated request with a seed)")


class JobOut(BaseModel):
    id: str
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    progress: dict[str, Any] = Field(default_factory=dict, description="scenes_done, scenes_total")
    story_id: str | None = None
    story: Story | None = None
    error: ErrorDetail | None = None


class SessionCreate(StoryRequest):
    turns: int | None = Field(None, ge=2, le=500, description="turns the arc is spread over")
    card: Card | None = Field(None, description="the V2 character card the session was made from, kept for its export")


class SessionChange(BaseModel):
    """What a session's player may change as it goes (PATCH): taken by the next turn."""

    author_note: str | None = Field(None, max_length=1000, description="style or focus for every turn; null clears it")
    sampling: StorySampling | None = Field(
        None, description="a preset's name (precise, balanced, creative, wild) or settings"
    )


class SwipesIn(BaseModel):
    n: int = Field(2, ge=1, le=4, description="alternatives to write for the last beat")


class ActionIn(BaseModel):
    action: str = Field(min_length=1, max_length=2000, description="what the player does next (story material)")


class CharacterOut(BaseModel):
    name: str
    role: str
    pronouns: str
    traits: list[str] = Field(default_factory=list)


class SessionOut(BaseModel):
    id: str
    status: str = Field(description="active, or expired (read-only: its story stays readable)")
    request: dict[str, Any]
    characters: list[CharacterOut]
    beats: list[Beat]
    text: str = Field(description="the story so far")
    arc: list[float | None] = Field(description="measured valence per beat")
    created_at: datetime | None = None
    last_active_at: datetime | None = None
    expires_at: datetime | None = None


class AnalyzeIn(BaseModel):
    text: str = Field(min_length=1, max_length=50_000)
    windows: int = Field(10, ge=1, le=100)


class WindowOut(BaseModel):
    index: int
    start: float
    end: float
    valence: float
    arousal: float
    emotion: str
    scores: dict[str, float]


class AnalyzeOut(BaseModel):
    windows: list[WindowOut]


class FeedbackIn(BaseModel):
    rating: int = Field(ge=1, le=5)
    comment: str | None = Field(None, max_length=2000)


class FeedbackOut(BaseModel):
    ok: bool = True


class RuleOut(BaseModel):
    audience: str | None = None
    culture: str | None = Field(None, description="a tag (en-GB), or a language (en) for all its tags")


class ModelOut(BaseModel):
    name: str = Field(description="what a request's `model` field names")
    backend: str
    model: str | None = Field(None, description="the model's own name (from its file once loaded, or the server's)")
    sha256: str | None = Field(None, description="of the weights file; known once loaded")
    weight_format: str | None = None
    context_length: int | None = Field(None, description="known once loaded")
    optimized: dict | None = Field(
        None, description="what `emotional-engine optimize` did to make the file: its steps, settings and parent"
    )
    loaded: bool
    default: bool = Field(description="requests no rule routes and that name no model get this one")
    rules: list[RuleOut] = Field(default_factory=list, description="the routing rules that pick this model")


class ModelEntry(BaseModel):
    """A model in OpenAI's list shape (`openai.models.list()` reads it), the engine's details under `engine`."""

    id: str = Field(description="what a request's `model` field names")
    object: Literal["model"] = "model"
    created: int = Field(0, description="unknown: 0")
    owned_by: str = "emotional-engine"
    engine: ModelOut


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelEntry]


class CultureOut(BaseModel):
    tag: str
    name: str


class ArcInfo(BaseModel):
    name: str
    points: list[tuple[float, float]]


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "degraded", "not_ready"]
    degraded: list[str] = Field(default_factory=list, description="parts not working, each with why")
