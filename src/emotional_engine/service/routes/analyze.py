"""POST /v1/analyze: the emotional arc of any text. It runs on the shared model thread, so it waits
for a generation slot like a story (the same queue, shedding and per-key concurrency) and charges the
text's tokens (about four characters a token: the emotion model, not the language model, reads it)."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from emotional_engine.service.deps import KeyId, ServiceDep
from emotional_engine.service.protocol import AnalyzeIn, AnalyzeOut, WindowOut
from emotional_engine.service.routes.stories import ERRORS
from emotional_engine.text import estimate_tokens
from emotional_engine.threads import run_model

router = APIRouter(prefix="/v1/analyze", tags=["analyze"])


@router.post("", response_model=AnalyzeOut, responses=ERRORS)
async def analyze(body: AnalyzeIn, key_id: KeyId, service: ServiceDep) -> AnalyzeOut:
    """Valence, arousal and top emotion of `windows` equal parts of the text."""
    await service.limiter.reserve(key_id, estimate_tokens(body.text))  # what it costs is known up front
    async with service.admission.slot(key_id):
        emotion = await run_model(lambda: service.engine.emotion)  # loaded once, in the model worker
        windows = await run_model(emotion.analyze, body.text, body.windows)
    return AnalyzeOut(windows=[WindowOut(**asdict(w)) for w in windows])
