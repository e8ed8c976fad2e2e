"""The service on fake models: a fake streaming generator and a fake emotion scorer, a SQLite store in
tmp_path, real Redis and PostgreSQL where a test asks for them (a clear failure when absent)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from contextlib import asynccontextmanager
from types import SimpleNamespace

import httpx
import pytest

from emotional_engine.config import Settings
from emotional_engine.domain import EMOTIONS
from emotional_engine.emotion.model import EmotionModel
from emotional_engine.lm.backends import ModelInfo
from emotional_engine.lm.engine import Completion, Piece
from emotional_engine.service import create_app
from emotional_engine.storage import Store

MOODS = ["joy", "fear", "sadness", "anticipation"]
VALENCE = {"joy": 0.8, "fear": -0.6, "sadness": -0.8, "anticipation": 0.3}
REDIS_URL = "redis://127.0.0.1:6379/0"


class FakeGenerator:
    """Writes a mood chosen by the seed; streams in small pieces, `delay` seconds apart."""

    info = ModelInfo("fake", "fake-model", sha256="f" * 64, weight_format="fp32")
    supports_logits_processors = False

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.calls = 0
        self.pieces = 0

    def _text(self, params) -> str:
        mood = MOODS[(params.seed or 0) % 4]
        return (f"The harbour woke in {mood}. Everyone felt {mood} as the boats went out. "
                f"Mira laughed at the gulls in {mood}. It was a {mood} morning")

    async def stream(self, prompt, params, *, session_id=None, processors=()):
        self.calls += 1
        text = self._text(params)
        for i in range(0, len(text), 9):
            await asyncio.sleep(self.delay)
            self.pieces += 1
            yield Piece(text[i:i + 9], token_id=1)
        yield Piece("", finish_reason="length", usage={"completion_tokens": len(text) // 9 + 1})

    async def complete(self, prompt, params, *, session_id=None, processors=()):
        self.calls += 1
        await asyncio.sleep(self.delay)
        self.pieces += 1
        return Completion(text=self._text(params), finish_reason="length", completion_tokens=20)

    async def aclose(self):
        pass


class FakeEmotion:
    analyze = EmotionModel.analyze  # the real windowing over the fake scorer

    def __init__(self):
        self.embedder = SimpleNamespace(encode=self._encode)

    def score_passages(self, texts):
        out = []
        for t in texts:
            mood = next((m for m in MOODS if m in t), "joy")
            scores = {e: (0.9 if e == mood else 0.1 / 8) for e in EMOTIONS}
            out.append(SimpleNamespace(valence=VALENCE[mood], arousal=0.1, emotion=mood, scores=scores))
        return out

    @staticmethod
    def _encode(texts, **kw):
        import numpy as np

        return np.ones((len(texts), 8)) / np.sqrt(8)


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
async def running(settings: Settings, key: str | None = None, generator=None, emotion=None):
    """The app with its lifespan run, and an httpx client on it (the key sent as Bearer)."""
    app = create_app(settings, generator=generator or FakeGenerator(), emotion=emotion or FakeEmotion(),
                     candidates=2)
    async with app.router.lifespan_context(app):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                                     headers=headers, timeout=30) as client:
            client.app = app
            yield client


@pytest.fixture
def app_client(settings, make_key):
    return lambda s=None, key="make", **kw: running(s or settings, make_key(s) if key == "make" else key, **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_server(settings):
    """start(settings=None, generator=None) -> (base_url, app) of a uvicorn server on loopback (real
    streaming and disconnects, which the in-process transport does not have)."""
    import uvicorn

    servers = []

    def start(s: Settings | None = None, generator=None):
        port = free_port()
        app = create_app(s or settings, generator=generator or FakeGenerator(), emotion=FakeEmotion(), candidates=2)
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
