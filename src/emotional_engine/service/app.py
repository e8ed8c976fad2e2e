"""`create_app(settings) -> FastAPI`: the HTTP service around one Engine.

The lifespan opens the store (migrating it), the cache and the limits, loads the default language
model and the emotion model (/readyz says when they are in), resumes unfinished jobs and expires
idle sessions. Other configured language models load on first use.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager, suppress
from functools import partial
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from emotional_engine.config import ModelCatalog, Settings, get_settings
from emotional_engine.engine import Engine
from emotional_engine.lm.generator import Generator
from emotional_engine.lm.models import Loader, ModelManager, make_generator
from emotional_engine.service import auth, errors
from emotional_engine.service.jobs import JobRunner
from emotional_engine.service.limits import Admission
from emotional_engine.service.live_sessions import LiveSessions
from emotional_engine.service.metering import MeteredGenerator
from emotional_engine.service.metrics import Metrics
from emotional_engine.service.middleware import BodyLimitAndMetrics
from emotional_engine.service.ratelimit import RateLimiter
from emotional_engine.service.routes import (
    analyze,
    cards,
    catalog,
    feedback,
    health,
    jobs,
    lorebook,
    memory,
    openai,
    sessions,
    stories,
)
from emotional_engine.service.state import Service
from emotional_engine.service.storecalls import call
from emotional_engine.storage.cache import MultiLevelCache
from emotional_engine.storage.db import Store
from emotional_engine.version import __version__

log = logging.getLogger(__name__)
MAX_LIVE_SESSIONS = 1024
PLAYGROUND = Path(__file__).parent / "playground"


def build_service(
    settings: Settings,
    catalog: ModelCatalog | None,
    load_model: Loader | None = None,
    generator: Generator | None = None,
    emotion=None,
    candidates: int = 4,
    check_safety: bool = True,
) -> Service:
    """`generator`: the one model (tests); else `catalog`'s models, loaded by `load_model` (default: from
    their files and servers)."""
    metrics = Metrics()
    # the Engine's every call to an LM goes through the meter (tokens, time to first token)
    if generator is not None:
        models = ModelManager.single(MeteredGenerator(generator, metrics))
    else:
        load = load_model or partial(make_generator, settings=settings)
        models = ModelManager(catalog, lambda spec: MeteredGenerator(load(spec), metrics), settings.max_loaded_models)
    engine = Engine(settings, models=models, emotion=emotion, candidates=candidates, check_safety=check_safety)
    store = Store.from_settings(settings)
    cache = MultiLevelCache(
        l1_size=settings.cache_l1_size,
        l1_ttl_s=settings.cache_ttl_s,
        redis_url=settings.redis_url,
        store=store,
        l2_ttl_s=settings.cache_ttl_s,
        l3_ttl_s=settings.cache_ttl_s,
        on_event=metrics.cache_event,
    )
    limiter = RateLimiter(
        settings.rate_limit_requests_per_min,
        settings.rate_limit_tokens_per_min,
        settings.redis_url,
        on_limit=lambda kind: metrics.rate_limited.labels(kind).inc(),
    )
    admission = Admission(
        settings.generation_slots,
        settings.generation_queue,
        settings.max_concurrent_per_key,
        max_wait_s=settings.generation_max_wait_s,
        metrics=metrics,
        background_slots=settings.job_slots,
    )

    async def keep_facts(session_id: str, index: int, part: dict) -> None:
        await call(service, service.store.sessions.keep_facts, session_id, index, part)

    service = Service(
        settings=settings,
        engine=engine,
        store=store,
        cache=cache,
        limiter=limiter,
        admission=admission,
        metrics=metrics,
        sessions=LiveSessions(
            engine,
            MAX_LIVE_SESSIONS,
            settings.session_idle_ttl_s,
            metrics.chat_sessions,
            metrics.session_lookups,
            keep_facts,
        ),
    )
    service.jobs = JobRunner(service)
    return service


def create_app(
    settings: Settings | None = None,
    *,
    generator: Generator | None = None,
    load_model: Loader | None = None,
    emotion=None,
    candidates: int = 4,
    check_safety: bool = True,
) -> FastAPI:
    """The app. The configured models are checked now (a ValueError says what is wrong); the default
    one loads at start, the others on first use. Tests pass fakes: one `generator`, or `load_model`
    for the configured models, and `check_safety=False` (the safety model is real and has its own tests)."""
    settings = settings or get_settings()
    models = None if generator is not None else settings.model_catalog()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        auth.warn_if_open(settings.auth_enabled)
        t0 = time.perf_counter()
        service = app.state.service = build_service(
            settings, models, load_model, generator, emotion, candidates, check_safety
        )
        await service.engine.load()  # the default model, the emotion model and embedder
        service.model_loaded = True
        log.info("models loaded in %.1f s", time.perf_counter() - t0)
        await asyncio.to_thread(service.store.migrate)
        if not settings.auth_enabled:
            service.local_key_id = await asyncio.to_thread(_local_key, service.store)
        await service.jobs.take_over()  # jobs left by a stopped or dead worker, this one's included
        background = [asyncio.create_task(_expire_sessions(service)), asyncio.create_task(service.jobs.watch())]
        try:
            yield
        finally:
            await service.jobs.release_all()
            for task in background:
                task.cancel()
            for task in background:
                with suppress(asyncio.CancelledError):
                    await task
            await service.limiter.aclose()
            await service.cache.aclose()
            service.store.close()

    app = FastAPI(
        title="emotional-engine",
        version=__version__,
        lifespan=lifespan,
        description="Stories with emotional intelligence and cultural sensitivity. Send your API key "
        "as `Authorization: Bearer <key>`.",
    )
    metrics_of = lambda: app.state.service.metrics  # noqa: E731  (the service exists once the app runs)
    errors.install(app, on_error=lambda type: metrics_of().errors.labels(type).inc())
    app.add_middleware(BodyLimitAndMetrics, max_body_bytes=settings.max_body_bytes, metrics=metrics_of)
    for r in (stories, jobs, cards, sessions, lorebook, memory, analyze, feedback, catalog, openai, health):
        app.include_router(r.router)
    # the web playground (playground/: plain HTML, CSS and JavaScript, no build step) at /
    app.mount("/playground", StaticFiles(directory=PLAYGROUND), name="playground")
    app.add_api_route("/", lambda: FileResponse(PLAYGROUND / "index.html"), include_in_schema=False)
    return app


def _local_key(store: Store) -> str:
    """With auth off every caller is one local identity; its key row owns what they create."""
    for k in store.list_keys():
        if k.name == auth.LOCAL_KEY_NAME and k.revoked_at is None:
            return k.id
    return store.create_key(auth.LOCAL_KEY_NAME)[1].id


async def _expire_sessions(service: Service) -> None:
    period = max(1.0, min(60.0, service.settings.session_idle_ttl_s / 4))
    while True:
        await asyncio.sleep(period)
        try:
            n = await asyncio.to_thread(service.store.sessions.expire_idle)
            if n:
                log.info("%d idle sessions expired", n)
        except Exception as e:  # the database is down: next round
            log.warning("expiring idle sessions failed: %s", e)
