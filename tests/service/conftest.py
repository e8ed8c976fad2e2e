"""The service on fake models: a fake streaming generator and a fake emotion scorer, a SQLite store in
tmp_path, real Redis and PostgreSQL where a test asks for them (tests/db_fixtures.py: a clear failure
when absent)."""

from __future__ import annotations

import threading
import time
from contextlib import asynccontextmanager

import httpx
import pytest

from emotional_engine.config import Settings
from emotional_engine.service import create_app
from emotional_engine.storage import Store
from fakes import FakeEmotion, harbour_generator
from service_helpers import free_port


@pytest.fixture
def settings(sqlite_url) -> Settings:
    return Settings(
        database_url=sqlite_url,
        redis_url=None,
        auth_enabled=True,
        rate_limit_requests_per_min=1000,
        rate_limit_tokens_per_min=10**6,
        generation_slots=4,
        generation_queue=8,
        max_concurrent_per_key=4,
        job_words_threshold=400,
        session_turns=6,
        max_body_bytes=16_000,
    )


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
    model is `generator` (default: fakes.harbour_generator()), or with `load_model` the settings' models."""
    model = {"load_model": load_model} if load_model else {"generator": generator or harbour_generator()}
    app = create_app(settings, **model, emotion=emotion or FakeEmotion(), candidates=2, check_safety=False)
    async with app.router.lifespan_context(app):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test", headers=headers, timeout=30
        ) as client:
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
        app = create_app(
            s or settings,
            generator=generator or harbour_generator(),
            emotion=FakeEmotion(),
            candidates=2,
            check_safety=False,
        )
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
