"""Stores on SQLite and on PostgreSQL (the databases come from tests/db_fixtures.py, shared with the
service tests), with a settable clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from emotional_engine.storage import Store


class Clock:
    """A settable UTC clock for the store (expiry, usage minutes) without sleeping."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(store_url, clock):
    s = Store(store_url, clock=clock, cache_max_rows=5)
    s.migrate()
    yield s
    s.close()


@pytest.fixture
def key_id(store) -> str:
    return store.create_key("tests")[1].id
