"""The store's interactive sessions and their turns (`Store.sessions`): create, play (add and undo a
turn under a row lock), read, keep alive, expire and delete. Each method is one transaction of the
store's, on its clock; the rules are those of `storage.db`."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from emotional_engine.storage.records import (
    CapReachedError,
    NotFoundError,
    SessionExpiredError,
    SessionRecord,
    TurnRecord,
    new_id,
)
from emotional_engine.storage.schema import SessionRow, TurnRow


class Sessions:
    """Interactive sessions and their turns, in the transactions of `transaction()` on the clock `now()`."""

    def __init__(self, transaction: Callable[[], AbstractContextManager[Session]], now: Callable[[], datetime]):
        self._transaction = transaction
        self._now = now

    def create(self, key_id: str, request: dict, ttl_s: int, cap: int | None = None) -> str:
        """A new active session; `cap`: at most that many live (active, unexpired) ones per key."""
        if ttl_s <= 0:
            raise ValueError("a session's idle time to live must be positive")
        now, session_id = self._now(), new_id()
        try:
            with self._transaction() as db:
                if cap is not None:
                    live = db.scalar(
                        select(func.count()).where(
                            SessionRow.key_id == key_id, SessionRow.status == "active", SessionRow.expires_at > now
                        )
                    )
                    if live >= cap:
                        raise CapReachedError("live sessions", cap)
                db.add(
                    SessionRow(
                        id=session_id,
                        key_id=key_id,
                        request=request,
                        status="active",
                        ttl_s=ttl_s,
                        created_at=now,
                        last_active_at=now,
                        expires_at=now + timedelta(seconds=ttl_s),
                    )
                )
        except IntegrityError:
            raise NotFoundError(f"no API key {key_id}") from None
        return session_id

    def _playable(self, db: Session, session_id: str, key_id: str) -> SessionRow:
        """The session's row, locked for the rest of the transaction, with its expiry pushed out.
        The lock is an UPDATE, the first statement: it takes SQLite's write lock and PostgreSQL's row
        lock before anything is read, so concurrent turns of one session queue instead of racing."""
        now = self._now()
        locked = db.execute(
            update(SessionRow)
            .where(SessionRow.id == session_id, SessionRow.key_id == key_id)
            .values(last_active_at=now)
        )
        if locked.rowcount == 0:
            raise NotFoundError(f"no session {session_id}")
        row = db.scalars(
            select(SessionRow).where(SessionRow.id == session_id).execution_options(populate_existing=True)
        ).one()
        if row.status != "active" or row.expires_at <= now:
            raise SessionExpiredError(f"session {session_id} expired after {row.ttl_s} s idle; it can still be read")
        row.expires_at = now + timedelta(seconds=row.ttl_s)  # the transaction's rollback undoes both
        return row

    def add_turn(self, session_id: str, key_id: str, action: str, beat: dict) -> int:
        """Append a turn; returns its index (0, 1, ...), committed before returning."""
        with self._transaction() as db:
            self._playable(db, session_id, key_id)
            last = db.scalar(select(func.max(TurnRow.index)).where(TurnRow.session_id == session_id))
            index = 0 if last is None else last + 1
            db.add(TurnRow(session_id=session_id, index=index, action=action, beat=beat, created_at=self._now()))
        return index

    def replace_last_turn(self, session_id: str, key_id: str, beat: dict) -> bool:
        """Put `beat` in place of the last turn's (regenerate), in one transaction: the old beat goes
        only with the new one kept. False if the session has no turn."""
        with self._transaction() as db:
            self._playable(db, session_id, key_id)
            turn = _last_turn(db, session_id)
            if turn is None:
                return False
            turn.beat, turn.created_at = beat, self._now()  # its facts: `keep_facts` (kept ones name their beat)
            return True

    def pop_turn(self, session_id: str, key_id: str) -> dict | None:
        """Remove the last turn (undo) and return it as {index, action, beat}; None if there is none."""
        with self._transaction() as db:
            self._playable(db, session_id, key_id)
            turn = _last_turn(db, session_id)
            if turn is None:
                return None
            db.delete(turn)
            return {"index": turn.index, "action": turn.action, "beat": turn.beat}

    def keep_facts(self, session_id: str, index: int, facts: dict) -> bool:
        """Store what the story memory holds from turn `index`'s beat (after its summary, or a player's
        edit), for the server that plays the session (its key was checked when the turn was played).
        False if the turn is gone (undone meanwhile); it does not keep the session alive."""
        with self._transaction() as db:
            done = db.execute(
                update(TurnRow).where(TurnRow.session_id == session_id, TurnRow.index == index).values(facts=facts)
            )
            return done.rowcount > 0

    def change_request(self, session_id: str, key_id: str, change: Callable[[dict], dict]) -> dict:
        """Replace the session's request by `change(request)` (its lorebook edited), under the session's row
        lock: two edits at once both land. Returns the new request."""
        with self._transaction() as db:
            row = self._playable(db, session_id, key_id)
            row.request = change(dict(row.request))
            return row.request

    def get(self, session_id: str, key_id: str) -> SessionRecord | None:
        with self._transaction() as db:
            row = db.scalar(select(SessionRow).where(SessionRow.id == session_id, SessionRow.key_id == key_id))
            if row is None:
                return None
            turns = db.scalars(select(TurnRow).where(TurnRow.session_id == session_id).order_by(TurnRow.index)).all()
        expired = row.status != "active" or row.expires_at <= self._now()
        return SessionRecord(
            id=row.id,
            key_id=row.key_id,
            request=row.request,
            status="expired" if expired else "active",
            created_at=row.created_at,
            last_active_at=row.last_active_at,
            expires_at=row.expires_at,
            turns=[
                TurnRecord(index=t.index, action=t.action, beat=t.beat, facts=t.facts, created_at=t.created_at)
                for t in turns
            ],
        )

    def touch(self, session_id: str, key_id: str) -> bool:
        """Push the session's expiry out by its time to live; False if it is missing or already expired."""
        try:
            with self._transaction() as db:
                self._playable(db, session_id, key_id)
            return True
        except (NotFoundError, SessionExpiredError):
            return False

    def expire_idle(self, now: datetime | None = None) -> int:
        """Mark sessions idle past their expiry as expired; returns how many. Their turns stay readable."""
        now = now or self._now()
        with self._transaction() as db:
            done = db.execute(
                update(SessionRow)
                .where(SessionRow.status == "active", SessionRow.expires_at <= now)
                .values(status="expired")
            )
            return done.rowcount

    def delete(self, session_id: str, key_id: str) -> bool:
        with self._transaction() as db:
            done = db.execute(delete(SessionRow).where(SessionRow.id == session_id, SessionRow.key_id == key_id))
            return done.rowcount > 0


def _last_turn(db: Session, session_id: str) -> TurnRow | None:
    return db.scalar(select(TurnRow).where(TurnRow.session_id == session_id).order_by(TurnRow.index.desc()).limit(1))
