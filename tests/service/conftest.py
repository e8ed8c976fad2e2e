"""The service on fake models: a fake streaming generator and a fake emotion scorer, a SQLite store in
tmp_path, real Redis and PostgreSQL where a test asks for them (a clear failure when absent)."""

from __future__ import annotations

import threading
import time
from contextlib import asynccontextmanager

import httpx
import pytest

from emotional_engine.config import Settings
from emotional_engine.service import create_app
from emotional_engine.storage import Store
from service_fakes import FakeEmotion, FakeGenerator, free_port

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'engine.db'}", redis_url=None, auth_enabled=True,
                    rate_limit_requests_per_min=1000, rate_limit_tokens_per_min=10**6, generation_slots=4,
                    generation_queue=8, max_concurrent_per_key=4, job_words_threshold=400, session_turns=6,
                    max_body_bytes=16_000)


@pytest.fixture
def make_key(settings):
    """make_key(settings=None) -> a plain API key stored in that settings' database."""

    def make(s: Settings | None = None, name: str = "test") -> str:
        store = Store.from_settings(s or settings)
        store.migrate()
        plain, _ = store.create_key(name)
        store.close()
        return plain

    return make


@asynccontextmanager
async def running(settings: Settings, key: str | None = None, generator=None, emotion=None, load_model=None):
    """The app with its lifespan run, and an httpx client on it (the key sent as Bearer). The one
    model is `generator` (default: a FakeGenerator), or with `load_model` the settings' models."""
    model = {"load_model": load_model} if load_model else {"generator": generator or FakeGenerator()}
    app = create_app(settings, **model, emotion=emotion or FakeEmotion(), candidates=2, check_safety=False)
    async with app.router.lifespan_context(app):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                                     headers=headers, timeout=30) as client:
            client.app = app
            yield client


@pytest.fixture
def app_client(settings, make_key):
    return lambda s=None, key="make", **kw: running(s or settings, make_key(s) if key == "make" else key, **kw)


@pytest.fixture
def live_server(settings):
    """start(settings=None, generator=None) -> (base_url, app) of a uvicorn server on loopback (real
    streaming and disconnects, which the in-process transport does not have)."""
    import uvicorn

    servers = []

    def start(s: Settings | None = None, generator=None):
        port = free_port()
        app = create_app(s or settings, generator=generator or FakeGenerator(), emotion=FakeEmotion(), candidates=2,
                         check_safety=False)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        t = threading.Thread(target=server.run, daemon=True)
        t.start()
        deadline = time.time() + 20
        while not server.started:
            if time.time() > deadline:
                pytest.fail("the test server did not start in 20 s")
            time.sleep(0.02)
        servers.append((server, t))
        return f"http://127.0.0.1:{port}", app

    yield start
    for server, t in servers:
        server.should_exit = True
        t.join(10)


@pytest.fixture
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as e:
        pytest.fail(f"Redis not reachable at {REDIS_URL} (the service's shared-limit and cache tests need it): {e}")
    return REDIS_URL


@pytest.fixture
def postgres_url():
    """A URL whose search_path is a fresh schema in the shared `test` database, dropped afterwards."""
    import uuid
    from urllib.parse import quote

    import psycopg

    conninfo = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"
    try:
        psycopg.connect(conninfo).close()
    except psycopg.OperationalError as e:
        pytest.fail(f"PostgreSQL not reachable at 127.0.0.1:5432 (the service's persistence test needs it): {e}")
    schema = f"ee_svc_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options={quote(f'-csearch_path={schema}')}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
