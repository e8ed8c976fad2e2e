"""GET /healthz (alive), /readyz (ready to serve; names what is degraded), /metrics (Prometheus)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from emotional_engine.service.deps import ServiceDep
from emotional_engine.service.protocol import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    return Health()


async def probe(service) -> list[str]:
    """What is down of the database and Redis: read at most every PROBE_TTL_S seconds however often
    /readyz and /metrics are called, one reading at a time; the ratings gauges are read with it."""
    async with service.probe_lock:
        if "parts" not in service.probes:
            parts = []
            database_up = await asyncio.to_thread(service.store.ping)
            if not database_up:
                parts.append(DATABASE_DOWN)
            if not (await service.cache.aping() and await service.limiter.ping()):
                parts.append(REDIS_DOWN)
            if database_up:
                try:
                    sat = await asyncio.to_thread(service.store.satisfaction)
                    service.metrics.satisfaction.set(sat["mean"] or 0.0)
                    service.metrics.ratings.set(sat["count"])
                except Exception:  # the database went down since the ping: the last values stay
                    pass
            service.probes["parts"] = parts
        return service.probes["parts"]


DATABASE_DOWN = "database: unreachable (cached stories are served; sessions and jobs are refused)"
DATABASE_FAILING = "database: calls failing (a full disk, or it went down): sessions and jobs are refused"
REDIS_DOWN = "redis: unreachable (in-process cache and per-process rate limits meanwhile)"


async def degraded_parts(service) -> list[str]:
    """The cached probe's reading, with what requests found since (no I/O): a failing store call, Redis
    unreachable by the limiter."""
    parts = ([] if service.model_loaded else ["model: not loaded yet"]) + await probe(service)
    if service.store_failing and DATABASE_DOWN not in parts:
        parts.append(DATABASE_FAILING)
    if service.limiter.degraded and REDIS_DOWN not in parts:
        parts.append(REDIS_DOWN)
    m = service.metrics.part_down
    for part in ("model", "database", "redis"):
        m.labels(part).set(int(any(p.startswith(part) for p in parts)))
    return parts


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(service: ServiceDep):
    parts = await degraded_parts(service)
    if not service.model_loaded:
        return JSONResponse(
            Readiness(status="not_ready", degraded=parts).model_dump(), status_code=503, headers={"Retry-After": "10"}
        )
    return Readiness(status="degraded" if parts else "ready", degraded=parts)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(service: ServiceDep) -> Response:
    await degraded_parts(service)
    return Response(service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
