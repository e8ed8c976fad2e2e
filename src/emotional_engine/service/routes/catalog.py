"""GET /v1/models, /v1/cultures, /v1/arcs: what a request can ask for."""

from __future__ import annotations

from fastapi import APIRouter

from emotional_engine.arcs import NAMED_ARCS
from emotional_engine.culture import supported_cultures
from emotional_engine.service.deps import KeyId, ServiceDep
from emotional_engine.service.protocol import ArcInfo, CultureOut, ModelEntry, ModelList, ModelOut
from emotional_engine.service.routes.stories import ERRORS

router = APIRouter(prefix="/v1", tags=["catalog"])


@router.get("/models", response_model=ModelList, responses=ERRORS)
async def models(key_id: KeyId, service: ServiceDep) -> ModelList:
    """The configured language models in OpenAI's list shape; a model's file details are known once it has
    loaded."""
    out = []
    for m in service.engine.models.describe():
        info, openai = m.info, m.spec.openai
        out.append(
            ModelOut(
                name=m.spec.name,
                backend=info.backend if info else m.spec.backend,
                model=info.name if info else openai and openai.model,
                sha256=info and info.sha256,
                weight_format=info and info.weight_format,
                context_length=info and info.context_length,
                optimized=info and info.optimized,
                loaded=info is not None,
                default=m.default,
                rules=m.rules,
            )
        )
    return ModelList(data=[ModelEntry(id=m.name, engine=m) for m in out])


@router.get("/cultures", response_model=list[CultureOut])
async def cultures() -> list[CultureOut]:
    return [CultureOut(tag=tag, name=name) for tag, name in supported_cultures()]


@router.get("/arcs", response_model=list[ArcInfo])
async def arcs() -> list[ArcInfo]:
    return [ArcInfo(name=name, points=list(points)) for name, points in NAMED_ARCS.items()]
