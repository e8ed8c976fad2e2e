"""The SQL tables (SQLAlchemy 2 typed models). Alembic migrations in `migrations/` must match them;
tests/storage/test_migrations.py checks there is no drift."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator):
    """Timestamps are stored in UTC and always come back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), bytes: LargeBinary()}


ID = String(32)  # uuid4().hex
CACHE_KEY_MAX = 64  # a SHA-256 in hex


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)  # shown to people; the lookup key
    salt: Mapped[str] = mapped_column(String(32))  # hex
    key_hash: Mapped[str] = mapped_column(String(64))  # sha256(salt || plain key), hex
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class StoryRow(Base):
    __tablename__ = "stories"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"), index=True)
    request: Mapped[dict[str, Any]]
    story: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class SessionRow(Base):
    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"), index=True)
    request: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))  # active | expired
    ttl_s: Mapped[int]
    created_at: Mapped[datetime]
    last_active_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


class TurnRow(Base):
    __tablename__ = "session_turns"
    __table_args__ = (UniqueConstraint("session_id", "index", name="uq_session_turns_session_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    index: Mapped[int]
    action: Mapped[str] = mapped_column(Text)
    beat: Mapped[dict[str, Any]]
    facts: Mapped[dict[str, Any] | None]  # the story memory's facts from this beat (None: not yet stored)
    created_at: Mapped[datetime]


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"), index=True)
    request: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), index=True)  # queued | running | done | failed | cancelled
    progress: Mapped[dict[str, Any]]
    story_id: Mapped[str | None] = mapped_column(ForeignKey("stories.id"))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # the lease: the worker running the job and until when; another may take it over after that
    owner: Mapped[str | None] = mapped_column(String(32))
    lease_expires_at: Mapped[datetime | None]


class FeedbackRow(Base):
    __tablename__ = "feedback"
    __table_args__ = (CheckConstraint("rating BETWEEN 1 AND 5", name="ck_feedback_rating"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # story | session
    target_id: Mapped[str] = mapped_column(ID, index=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    rating: Mapped[int]
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]


class UsageRow(Base):
    """Requests and generated tokens per key per minute."""

    __tablename__ = "usage"

    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"), primary_key=True)
    minute: Mapped[datetime] = mapped_column(primary_key=True)
    requests: Mapped[int]
    tokens: Mapped[int]


class CacheRow(Base):
    """The cache's third level: rows expire by time and the oldest are evicted beyond a row budget."""

    __tablename__ = "cache_entries"

    key: Mapped[str] = mapped_column(String(CACHE_KEY_MAX), primary_key=True)
    value: Mapped[bytes]
    created_at: Mapped[datetime] = mapped_column(index=True)
    expires_at: Mapped[datetime]
