"""The store: API keys, stories, interactive sessions and their turns (`Store.sessions`, in
storage/sessions.py), jobs, feedback, usage and the cache's third level, in SQL through SQLAlchemy 2.
SQLite file by default, PostgreSQL by URL.

Every method is one transaction: when it returns, what it wrote is committed, and a crash before
that leaves nothing of it behind. Methods are synchronous; an asyncio caller runs them in a thread
(`asyncio.to_thread`). Reads that take a key id return only that key's rows (None otherwise), so a
key never learns whether another key's id exists.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import delete, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from emotional_engine.storage import keys, migrate
from emotional_engine.storage.connect import default_database_url, make_engine
from emotional_engine.storage.records import (
    ApiKeyInfo,
    CapReachedError,
    JobRecord,
    NotFoundError,
    Usage,
    UsageWindow,
    new_id,
)
from emotional_engine.storage.schema import (
    CACHE_KEY_MAX,
    ApiKey,
    CacheRow,
    FeedbackRow,
    JobRow,
    SessionRow,
    StoryRow,
    UsageRow,
)
from emotional_engine.storage.sessions import Sessions

if TYPE_CHECKING:
    from emotional_engine.config import Settings

UNFINISHED = ("queued", "running")
MAX_COMMENT = 5000


def utcnow() -> datetime:
    return datetime.now(UTC)


class Store:
    def __init__(self, url: str, *, cache_max_rows: int = 10_000, clock: Callable[[], datetime] = utcnow):
        if cache_max_rows < 1:
            raise ValueError("cache_max_rows must be at least 1")
        self.url = url
        self.engine = make_engine(url)
        self.cache_max_rows = cache_max_rows
        self.now = clock
        # `with self._transaction() as db:` is one transaction, committed when the block ends
        self._transaction = sessionmaker(self.engine, expire_on_commit=False).begin
        # interactive sessions and their turns; the store's transactions and clock, looked up at each call
        self.sessions = Sessions(lambda: self._transaction(), lambda: self.now())

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        return cls(settings.database_url or default_database_url(settings), cache_max_rows=settings.cache_l3_max_rows)

    def migrate(self) -> None:
        """Bring the schema to the newest migration (a no-op when it is already there)."""
        migrate.upgrade(self.engine)

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    def close(self) -> None:
        self.engine.dispose()

    def _upsert(
        self, db: Session, model, values: dict[str, Any], conflict: list[str], updates: Callable[[Any], dict[str, Any]]
    ) -> None:
        """INSERT ... ON CONFLICT DO UPDATE; `updates(excluded)` gives the new values of an existing row."""
        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        stmt = insert(model).values(**values)
        db.execute(stmt.on_conflict_do_update(index_elements=conflict, set_=updates(stmt.excluded)))

    # ---- API keys ---------------------------------------------------------------------------

    def create_key(self, name: str) -> tuple[str, ApiKeyInfo]:
        """A new key: the plain key (shown once, never stored) and its record."""
        name = name.strip()
        if not name or len(name) > 200:
            raise ValueError("a key's name must be 1-200 characters")
        for _ in range(5):  # the 32-bit prefix may collide with an existing one: draw again
            plain = keys.new_key()
            salt = keys.new_salt()
            row = ApiKey(
                id=new_id(),
                name=name,
                prefix=keys.prefix_of(plain),
                salt=salt,
                key_hash=keys.hash_key(plain, salt),
                created_at=self.now(),
            )
            try:
                with self._transaction() as db:
                    db.add(row)
                return plain, _key_info(row)
            except IntegrityError:
                continue
        raise RuntimeError("could not draw a unique key prefix")

    def verify_key(self, plain: str) -> ApiKeyInfo | None:
        """The key's record if the plain key is valid and not revoked; None otherwise."""
        if not keys.well_formed(plain):
            return None
        with self._transaction() as db:
            row = db.scalar(select(ApiKey).where(ApiKey.prefix == keys.prefix_of(plain)))
        if row is None or row.revoked_at is not None or not keys.matches(plain, row.salt, row.key_hash):
            return None
        return _key_info(row)

    def list_keys(self) -> list[ApiKeyInfo]:
        with self._transaction() as db:
            return [_key_info(r) for r in db.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id))]

    def revoke_key(self, key_id_or_prefix: str) -> bool:
        """Revoke by id, by prefix (`ee_1a2b3c4d`) or by the plain key; False if no active key matches."""
        ref = key_id_or_prefix.strip()
        if keys.well_formed(ref):
            ref = keys.prefix_of(ref)
        with self._transaction() as db:
            done = db.execute(
                update(ApiKey)
                .where((ApiKey.id == ref) | (ApiKey.prefix == ref), ApiKey.revoked_at.is_(None))
                .values(revoked_at=self.now())
            )
            return done.rowcount > 0

    # ---- stories ----------------------------------------------------------------------------

    def save_story(self, key_id: str, request: dict, story: dict) -> str:
        story_id = new_id()
        try:
            with self._transaction() as db:
                db.add(StoryRow(id=story_id, key_id=key_id, request=request, story=story, created_at=self.now()))
        except IntegrityError:
            raise NotFoundError(f"no API key {key_id}") from None
        return story_id

    def get_story(self, story_id: str, key_id: str) -> dict | None:
        with self._transaction() as db:
            row = db.scalar(select(StoryRow).where(StoryRow.id == story_id, StoryRow.key_id == key_id))
        return None if row is None else row.story

    # ---- jobs (long stories, resumable) -----------------------------------------------------

    def create_job(self, key_id: str, request: dict, cap: int | None = None) -> str:
        """A new queued job; `cap`: at most that many unfinished ones per key."""
        now, job_id = self.now(), new_id()
        try:
            with self._transaction() as db:
                if cap is not None:
                    q = select(func.count()).where(JobRow.key_id == key_id, JobRow.status.in_(UNFINISHED))
                    if db.scalar(q) >= cap:
                        raise CapReachedError("unfinished jobs", cap)
                db.add(
                    JobRow(
                        id=job_id,
                        key_id=key_id,
                        request=request,
                        status="queued",
                        progress={},
                        created_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError:
            raise NotFoundError(f"no API key {key_id}") from None
        return job_id

    def _advance_job(self, job_id: str, holder: str | None, **values) -> bool:
        """Change an unfinished job, only if `holder` holds its lease (whoever does when None)."""
        held = [] if holder is None else [JobRow.owner == holder]
        with self._transaction() as db:
            done = db.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.status.in_(UNFINISHED), *held)
                .values(updated_at=self.now(), **values)
            )
            return done.rowcount > 0

    def checkpoint_job(self, job_id: str, progress: dict, owner: str | None = None) -> bool:
        """Replace the job's progress (e.g. the scenes finished so far) and mark it running.
        False if the job is no longer unfinished (cancelled, say) or `owner` lost it: the worker should stop."""
        return self._advance_job(job_id, owner, progress=progress, status="running")

    def finish_job(self, job_id: str, story_id: str, owner: str | None = None) -> bool:
        return self._advance_job(job_id, owner, status="done", story_id=story_id, owner=None, lease_expires_at=None)

    def fail_job(self, job_id: str, message: str, owner: str | None = None) -> bool:
        return self._advance_job(job_id, owner, status="failed", error=message, owner=None, lease_expires_at=None)

    def claim_job(self, job_id: str, owner: str, lease_s: float) -> JobRecord | None:
        """Take the unfinished job for `owner` until now + `lease_s`, unless another worker holds a
        lease that has not expired (one conditional UPDATE: of two claimants one wins); the job, or None.
        The holder renews its lease with the same call."""
        now = self.now()
        free = or_(JobRow.owner.is_(None), JobRow.owner == owner, JobRow.lease_expires_at < now)
        with self._transaction() as db:
            done = db.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.status.in_(UNFINISHED), free)
                .values(owner=owner, lease_expires_at=now + timedelta(seconds=lease_s))
            )
            row = db.get(JobRow, job_id) if done.rowcount else None
            return None if row is None else _job_record(row)

    def release_job(self, job_id: str, owner: str) -> bool:
        """Give the job up (a worker shutting down): another may claim it at once."""
        with self._transaction() as db:
            done = db.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.owner == owner)
                .values(owner=None, lease_expires_at=None)
            )
            return done.rowcount > 0

    def claimable_jobs(self) -> list[str]:
        """Ids of the unfinished jobs nobody holds a live lease on, oldest first."""
        free = or_(JobRow.owner.is_(None), JobRow.lease_expires_at < self.now())
        with self._transaction() as db:
            q = select(JobRow.id).where(JobRow.status.in_(UNFINISHED), free).order_by(JobRow.created_at)
            return list(db.scalars(q).all())

    def cancel_job(self, job_id: str, key_id: str) -> bool:
        with self._transaction() as db:
            done = db.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.key_id == key_id, JobRow.status.in_(UNFINISHED))
                .values(status="cancelled", updated_at=self.now(), owner=None, lease_expires_at=None)
            )
            return done.rowcount > 0

    def get_job(self, job_id: str, key_id: str) -> JobRecord | None:
        with self._transaction() as db:
            row = db.scalar(select(JobRow).where(JobRow.id == job_id, JobRow.key_id == key_id))
        return None if row is None else _job_record(row)

    def unfinished_jobs(self) -> list[JobRecord]:
        """Queued and running jobs, oldest first: what a restarted server resumes."""
        with self._transaction() as db:
            rows = db.scalars(select(JobRow).where(JobRow.status.in_(UNFINISHED)).order_by(JobRow.created_at)).all()
        return [_job_record(r) for r in rows]

    # ---- feedback ---------------------------------------------------------------------------

    def add_feedback(
        self, kind: Literal["story", "session"], target_id: str, key_id: str, rating: int, comment: str | None = None
    ) -> int | None:
        """Store a 1-5 rating of the key's own story or session; None if the key has no such target."""
        if kind not in ("story", "session"):
            raise ValueError(f"feedback is on a 'story' or a 'session', not {kind!r}")
        if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
            raise ValueError(f"a rating is an integer from 1 to 5, not {rating!r}")
        if comment is not None and len(comment) > MAX_COMMENT:
            raise ValueError(f"a comment is at most {MAX_COMMENT} characters")
        target = StoryRow if kind == "story" else SessionRow
        with self._transaction() as db:
            if db.scalar(select(target.id).where(target.id == target_id, target.key_id == key_id)) is None:
                return None
            row = FeedbackRow(
                kind=kind, target_id=target_id, key_id=key_id, rating=rating, comment=comment, created_at=self.now()
            )
            db.add(row)
            db.flush()
            return row.id

    def satisfaction(self, kind: Literal["story", "session"] | None = None) -> dict:
        """The user-satisfaction metric: count, mean rating (None without ratings) and the count per rating."""
        query = select(FeedbackRow.rating, func.count()).group_by(FeedbackRow.rating)
        if kind is not None:
            query = query.where(FeedbackRow.kind == kind)
        with self._transaction() as db:
            counts = {rating: n for rating, n in db.execute(query)}
        distribution = {r: counts.get(r, 0) for r in range(1, 6)}
        n = sum(distribution.values())
        mean = sum(r * c for r, c in distribution.items()) / n if n else None
        return {"count": n, "mean": mean, "distribution": distribution}

    # ---- usage ------------------------------------------------------------------------------

    def record_usage(self, key_id: str, requests: int = 1, tokens: int = 0) -> None:
        """Add to the key's counts for the current minute (one row per key and minute)."""
        if requests < 0 or tokens < 0:
            raise ValueError("usage counts cannot be negative")
        minute = self.now().replace(second=0, microsecond=0)
        with self._transaction() as db:
            self._upsert(
                db,
                UsageRow,
                dict(key_id=key_id, minute=minute, requests=requests, tokens=tokens),
                ["key_id", "minute"],
                lambda new: {"requests": UsageRow.requests + new.requests, "tokens": UsageRow.tokens + new.tokens},
            )

    def usage(self, key_id: str, since: datetime | None = None) -> Usage:
        query = select(UsageRow).where(UsageRow.key_id == key_id).order_by(UsageRow.minute)
        if since is not None:
            query = query.where(UsageRow.minute >= since)
        with self._transaction() as db:
            rows = db.scalars(query).all()
        return Usage(
            key_id=key_id,
            requests=sum(r.requests for r in rows),
            tokens=sum(r.tokens for r in rows),
            minutes=[UsageWindow(minute=r.minute, requests=r.requests, tokens=r.tokens) for r in rows],
        )

    # ---- the cache's third level ------------------------------------------------------------

    def cache_get(self, key: str) -> bytes | None:
        _check_cache_key(key)
        with self._transaction() as db:
            return db.scalar(select(CacheRow.value).where(CacheRow.key == key, CacheRow.expires_at > self.now()))

    def cache_put(self, key: str, value: bytes, ttl_s: float) -> None:
        """Insert or replace; then drop expired rows and, beyond `cache_max_rows`, the oldest."""
        _check_cache_key(key)
        if ttl_s <= 0:
            raise ValueError("a cache entry's time to live must be positive")
        now = self.now()
        row = dict(value=value, created_at=now, expires_at=now + timedelta(seconds=ttl_s))
        with self._transaction() as db:
            self._upsert(db, CacheRow, dict(key=key, **row), ["key"], lambda new: row)
            db.execute(delete(CacheRow).where(CacheRow.expires_at <= now))
            if db.scalar(select(func.count()).select_from(CacheRow)) > self.cache_max_rows:
                newest_first = select(CacheRow.key).order_by(CacheRow.created_at.desc(), CacheRow.key)
                stale = newest_first.offset(self.cache_max_rows).subquery()
                db.execute(delete(CacheRow).where(CacheRow.key.in_(select(stale.c.key))))


def _check_cache_key(key: str) -> None:
    if not 1 <= len(key) <= CACHE_KEY_MAX:  # the column's width, enforced the same on every backend
        raise ValueError(f"cache keys are 1-{CACHE_KEY_MAX} characters (request_cache_key gives 64 hex digits)")


def _key_info(row: ApiKey) -> ApiKeyInfo:
    return ApiKeyInfo(id=row.id, name=row.name, prefix=row.prefix, created_at=row.created_at, revoked_at=row.revoked_at)


def _job_record(row: JobRow) -> JobRecord:
    return JobRecord(
        id=row.id,
        key_id=row.key_id,
        request=row.request,
        status=row.status,
        progress=row.progress,
        story_id=row.story_id,
        error=row.error,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
