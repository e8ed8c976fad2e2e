"""The orchestrator: plan the story, then for each scene write candidates, measure them, let the
agents check the chosen one in parallel, repair, and remember. Knows nothing of HTTP.

Per scene: the emotional-intelligence agent's guidance goes into the prompt and the sampler; the
candidates are written concurrently (the builtin runtime batches them into shared forward
passes); the emotion model scores all candidates in one batched call in a worker thread; the
technical, cultural and character agents then run in parallel under a timeout each. An agent that
fails or times out is skipped and named in `degraded`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel

from emotional_engine import __version__
from emotional_engine.agents import character as character_agent
from emotional_engine.agents import cultural as cultural_agent
from emotional_engine.agents import emotion as emotion_agent
from emotional_engine.agents import quality as quality_agent
from emotional_engine.agents import technical as technical_agent
from emotional_engine.agents.base import run_parallel
from emotional_engine.agents.prompts import scene_messages
from emotional_engine.agents.story import StoryPlan, plan_story
from emotional_engine.culture import load_profile
from emotional_engine.domain import ArcOut, Character, Measurement, Scene, Story, StoryRequest
from emotional_engine.lm.backends import Generator, emotion_context
from emotional_engine.lm.sampling import SamplingParams
from emotional_engine.threads import run_model


class EmotionScorer(Protocol):
    def score_passages(self, texts: list[str]) -> list[Any]: ...


@dataclass
class Deps:
    generator: Generator
    emotion: EmotionScorer
    embed: Callable[[list[str]], np.ndarray]
    candidates: int = 4
    agent_timeout_s: float = 30.0


@dataclass
class Event:
    """plan | scene_started | text | scene_done | story_done"""

    kind: str
    data: Any = None


@dataclass
class _Timing:
    lm_ms: float = 0.0
    models_ms: float = 0.0  # emotion and embedding model forward passes
    total_ms: float = 0.0
    per_scene_overhead_ms: list[float] = field(default_factory=list)


class SceneOutcome(BaseModel):
    scene: Scene
    distance: float
    character_consistency: float
    cultural_fit: float
    reasons: list[str]
    degraded: list[str]


def _seed(request: StoryRequest) -> int:
    return request.seed if request.seed is not None else random.randrange(2**31)


async def write_story(request: StoryRequest, deps: Deps, on_event: Callable[[Event], None] = lambda e: None) -> Story:
    t_start = time.perf_counter()
    timing = _Timing()
    seed = _seed(request)
    profile = load_profile(request.culture)
    cast = character_agent.build_cast(request.model_copy(update={"seed": seed}), profile)
    plan = plan_story(request, profile.story.structure, [cast[0].name])
    on_event(Event("plan", plan))
    targets = [s.target for s in plan.scenes]
    outcomes: list[SceneOutcome] = []
    story_text = ""
    for i, scene_plan in enumerate(plan.scenes):
        t_scene = time.perf_counter()
        lm0, models0 = timing.lm_ms, timing.models_ms
        on_event(Event("scene_started", {"index": i, "target": targets[i]}))
        plan.scenes[i] = scene_plan = scene_plan.model_copy(update={"target": targets[i]})
        outcome = await _write_scene(request, deps, profile, plan, cast, i, story_text, seed, timing)
        outcomes.append(outcome)
        text = outcome.scene.text
        story_text = f"{story_text}\n\n{text}" if story_text else text
        on_event(Event("text", text))
        on_event(Event("scene_done", outcome.scene))
        if i + 1 < len(targets) and outcome.scene.measured is not None:
            targets[i + 1] = emotion_agent.compensate(targets[i + 1], targets[i], outcome.scene.measured.valence)
        elapsed = 1000 * (time.perf_counter() - t_scene)
        timing.per_scene_overhead_ms.append(elapsed - (timing.lm_ms - lm0) - (timing.models_ms - models0))

    story = await _finish(request, deps, plan, cast, outcomes, story_text, seed, timing, t_start)
    on_event(Event("story_done", story))
    return story


async def _write_scene(request, deps: Deps, profile, plan: StoryPlan, cast: list[Character], i: int,
                       story_text: str, seed: int, timing: _Timing) -> SceneOutcome:
    sp = plan.scenes[i]
    guide = emotion_agent.guidance(sp.target, request.sampling.temperature)
    messages = scene_messages(request, profile, plan, cast, sp, guide, story_text)
    n = max(1, deps.candidates)
    params = [SamplingParams(max_tokens=int(sp.words * 1.7) + 16, temperature=guide.temperature,
                             top_p=request.sampling.top_p, repetition_penalty=request.sampling.repetition_penalty,
                             seed=seed * 1009 + i * 31 + k, emotion_context=emotion_context(deps.generator, sp.target.emotion))
              for k in range(n)]
    t0 = time.perf_counter()
    done = await asyncio.gather(*(deps.generator.complete(messages, p) for p in params))
    timing.lm_ms += 1000 * (time.perf_counter() - t0)
    texts = [technical_agent.trim_to_last_sentence(technical_agent.strip_meta_lines(d.text)) or d.text.strip()
             for d in done]

    t0 = time.perf_counter()
    measured = await run_model(deps.emotion.score_passages, texts)
    timing.models_ms += 1000 * (time.perf_counter() - t0)
    # a candidate far from the scene's length loses up to 0.5: emotion decides among usable ones
    length_miss = [min(1.0, abs(len(t.split()) - sp.words) / sp.words) * 0.5 for t in texts]
    choice = emotion_agent.choose(measured, sp.target, length_miss)
    text = texts[choice.index]
    names = [c.name for c in cast]

    async def technical():
        return await asyncio.to_thread(technical_agent.check_text, text, request.audience, sp.words)

    async def cultural():
        fixed, report = await asyncio.to_thread(cultural_agent.check_and_repair, text, profile.tag, names, seed + i)
        return _Repaired(text=fixed, report=report)

    async def character():
        return await asyncio.to_thread(character_agent.check_mentions, text, cast)

    results = await run_parallel({
        "technical": (technical, deps.agent_timeout_s),
        "cultural": (cultural, deps.agent_timeout_s),
        "character": (character, deps.agent_timeout_s),
    })
    degraded = [name for name, r in results.items() if not r.ok]
    reasons: list[str] = []
    cultural_fit = character_consistency = 1.0
    if results["cultural"].ok:
        text = results["cultural"].output.text
        cultural_fit = results["cultural"].output.report.cultural_fit
        reasons += results["cultural"].output.report.reasons
    if results["character"].ok:
        character_consistency = results["character"].output.character_consistency
        reasons += results["character"].output.reasons
    if results["technical"].ok:
        reasons += [f"scene {i + 1}: {issue}" for issue in results["technical"].output.issues]
    m = measured[choice.index]
    scene = Scene(index=i, text=text, target=sp.target,
                  measured=Measurement(valence=float(np.clip(m.valence, -1, 1)), arousal=float(np.clip(m.arousal, -1, 1)),
                                       emotion=m.emotion, scores=m.scores))
    return SceneOutcome(scene=scene, distance=choice.distance, character_consistency=character_consistency,
                        cultural_fit=cultural_fit, reasons=reasons, degraded=degraded)


class _Repaired(BaseModel):
    text: str
    report: cultural_agent.CulturalReport


async def _finish(request, deps: Deps, plan: StoryPlan, cast: list[Character], outcomes: list[SceneOutcome],
                  story_text: str, seed: int, timing: _Timing, t_start: float) -> Story:
    t0 = time.perf_counter()
    coherence = await run_model(quality_agent.coherence, deps.embed, request.premise,
                                        [o.scene.text for o in outcomes])
    timing.models_ms += 1000 * (time.perf_counter() - t0)
    reasons = [r for o in outcomes for r in o.reasons]
    quality = quality_agent.assess(
        emotion_distances=[o.distance for o in outcomes],
        character_consistency=float(np.mean([o.character_consistency for o in outcomes])),
        cultural_fit=float(np.mean([o.cultural_fit for o in outcomes])),
        coherence_score=coherence, text=story_text, reasons=reasons,
    )
    for c in cast:  # each character's state per scene: the scene's measured emotion
        c.states = [o.scene.measured.emotion for o in outcomes if o.scene.measured is not None]
    degraded = sorted({d for o in outcomes for d in o.degraded})
    timing.total_ms = 1000 * (time.perf_counter() - t_start)
    info = deps.generator.info
    return Story(
        title=_title(request.premise), text=story_text, culture=request.culture,
        language=request.language or "en",
        arc=ArcOut(name=plan.arc_name, target=[s.target.valence for s in plan.scenes]),
        scenes=[o.scene for o in outcomes], characters=cast, quality=quality,
        safety={"status": "not checked", "note": "the audience safety check is not built yet"},
        degraded=degraded,
        timings_ms={"total": round(timing.total_ms, 1), "language_model": round(timing.lm_ms, 1),
                    "emotion_and_embedding_models": round(timing.models_ms, 1),
                    "orchestration_overhead_per_scene": round(float(np.mean(timing.per_scene_overhead_ms)), 2)},
        provenance={"engine": __version__, "backend": info.backend, "model": info.name, "model_sha256": info.sha256,
                    "weight_format": info.weight_format, "emotion_adapter": info.adapter, "seed": seed, "candidates": deps.candidates,
                    "structure": plan.structure, "sampling": request.sampling.model_dump()},
    )


def _title(premise: str) -> str:
    words = premise.split()
    return " ".join(words[:8]).rstrip(".,;:") + ("…" if len(words) > 8 else "")
