"""Opening a database: the URL checked, an SQLAlchemy engine made for SQLite or PostgreSQL, and
SQLite's connection settings (busy timeout, WAL, foreign keys); the default database's URL."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from emotional_engine.config import redacted_url

if TYPE_CHECKING:
    from emotional_engine.config import Settings

SQLITE_BUSY_S = 30  # how long an SQLite writer waits for another's write lock


def default_database_url(settings: Settings) -> str:
    base = settings.cache_dir or Path.home() / ".local" / "share" / "emotional-engine"
    return f"sqlite:///{Path(base).expanduser() / 'engine.db'}"


def make_engine(url: str) -> Engine:
    try:
        u = make_url(url)
    except ArgumentError:
        raise ValueError(
            f"not a database URL: {redacted_url(url)!r} (e.g. sqlite:///engine.db or postgresql+psycopg://user@host:5432/db)"
        ) from None
    if u.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValueError(f"database {u.get_backend_name()!r} is not supported: use sqlite or postgresql")
    if u.get_backend_name() == "postgresql":
        # pre-ping: a restarted database is noticed on the next checkout, not on a failed query
        return create_engine(u, pool_pre_ping=True, connect_args={"connect_timeout": 3})
    if u.database in (None, "", ":memory:"):
        engine = create_engine(u, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # a writer waits SQLITE_BUSY_S for the write lock (the connection's pragmas included): a
        # replica migrating at start-up on a loaded machine held it past the 5 s default (seen in CI)
        engine = create_engine(u, connect_args={"timeout": SQLITE_BUSY_S})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_S * 1000}")  # before anything may wait
        _enable_wal(cur)  # readers do not block the writer
        cur.execute("PRAGMA foreign_keys=ON")  # off by default in SQLite; session turns cascade
        cur.close()

    return engine


def _enable_wal(cur: sqlite3.Cursor) -> None:
    """Switching a database to WAL needs its exclusive lock, and SQLite answers "database is locked"
    at once instead of calling the busy handler: a replica connecting while another one migrated
    failed at start-up (seen in CI). So wait for the lock here, as long as any other write would."""
    deadline = time.monotonic() + SQLITE_BUSY_S
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
