"""What the store hands back (plain pydantic records, detached from the database), the errors it raises, and
its row ids."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

SessionStatus = Literal["active", "expired"]
JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]


class NotFoundError(LookupError):
    """The row does not exist, or belongs to another key."""


class SessionExpiredError(RuntimeError):
    """The session was idle past its time to live: it can be read, not played on."""


class CapReachedError(RuntimeError):
    """The key already has as many unfinished jobs or live sessions as it may."""

    def __init__(self, what: str, cap: int):
        super().__init__(f"this API key already has {cap} {what}; wait for one to end")
        self.what, self.cap = what, cap


def new_id() -> str:
    return uuid.uuid4().hex


class ApiKeyInfo(BaseModel):
    id: str
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None = None


class TurnRecord(BaseModel):
    index: int
    action: str
    beat: dict[str, Any]
    facts: dict[str, Any] | None = None  # StoryMemory.scene_part of the beat, once remembered
    created_at: datetime


class SessionRecord(BaseModel):
    id: str
    key_id: str
    request: dict[str, Any]
    turns: list[TurnRecord]
    status: SessionStatus
    created_at: datetime
    last_active_at: datetime
    expires_at: datetime


class JobRecord(BaseModel):
    id: str
    key_id: str
    request: dict[str, Any]
    status: JobStatus
    progress: dict[str, Any]
    story_id: str | None = None
    error: str | None = None
    created_at: datetime
    updated_at: datetime


class UsageWindow(BaseModel):
    minute: datetime
    requests: int
    tokens: int


class Usage(BaseModel):
    key_id: str
    requests: int
    tokens: int
    minutes: list[UsageWindow]  # oldest first
