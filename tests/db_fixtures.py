"""Databases for the storage and service tests (a pytest plugin, listed in tests/conftest.py): SQLite
(a temporary file), PostgreSQL (a schema of the test's own in the shared `test` database, dropped
afterwards) and Redis (a key prefix of the test's own). PostgreSQL and Redis must be running: without
them these tests fail with a message saying what is missing and where, they never skip."""

from __future__ import annotations

import os
import uuid
from urllib.parse import quote

import psycopg
import pytest
import redis

PG_HOST = os.environ.get("EE_TEST_POSTGRES", "postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("EE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def pytest_collection_modifyitems(items):
    """Mark what needs PostgreSQL or Redis, so `-m 'not services'` can deliberately leave it out."""
    for item in items:
        on_postgres = getattr(item, "callspec", None) and item.callspec.params.get("store_url") == "postgresql"
        if on_postgres or {"postgres_admin", "redis_url"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)


@pytest.fixture(scope="session")
def postgres_admin() -> str:
    """A libpq connection string for creating and dropping our schemas."""
    user_host, db = PG_HOST.rsplit("/", 1)
    user, hostport = user_host.split("@")
    host, port = hostport.split(":")
    conninfo = f"host={host} port={port} user={user} dbname={db} connect_timeout=3"
    try:
        psycopg.connect(conninfo).close()
    except psycopg.OperationalError as e:
        pytest.fail(
            f"PostgreSQL not reachable at {PG_HOST} (the storage and service tests need it; set "
            f"EE_TEST_POSTGRES to user@host:port/db): {e}"
        )
    return conninfo


@pytest.fixture
def postgres_url(postgres_admin):
    """A SQLAlchemy URL whose search_path is a fresh schema; the schema is dropped afterwards."""
    schema = f"ee_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield f"postgresql+psycopg://{PG_HOST}?options={quote(f'-csearch_path={schema}')}"
    with psycopg.connect(postgres_admin, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'engine.db'}"


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as e:
        pytest.fail(
            f"Redis not reachable at {REDIS_URL} (the storage and service tests need it; set EE_TEST_REDIS_URL): {e}"
        )
    return REDIS_URL


@pytest.fixture
def namespace(redis_url):
    """A key prefix of this test's own in the shared Redis, deleted afterwards."""
    ns = f"ee:test:{uuid.uuid4().hex[:12]}:"
    yield ns
    r = redis.Redis.from_url(redis_url)
    for k in r.scan_iter(match=ns + "*"):
        r.delete(k)
    r.close()
