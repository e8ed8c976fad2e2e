"""The orchestrator: plan the story, then write it scene by scene. Knows nothing of HTTP.

The plan is the rule skeleton (`agents/story.py`) with the model's outline on it (`agents/outline.py`:
one constrained line per scene, with the builtin model); the scene prompts carry the outline, and a
scene that strays from it hands the story memory's account of what happened to the next prompt.
Each scene is written by `agents/scene_writer.py` (candidates, choice, the sentence gate, the
checking agents); the next scene's target compensates for a miss. `story_events` yields what
happens as it happens; `write_story` runs the same procedure: same seed, same story.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing

import numpy as np

from emotional_engine.agents import adherence
from emotional_engine.agents import emotional_intelligence as emotion_agent
from emotional_engine.agents import quality as quality_agent
from emotional_engine.agents.outline import drift_note, keep_on_premise, write_outline
from emotional_engine.agents.run import Deps, Event, SceneOutcome, StoryRun
from emotional_engine.agents.scene_writer import scene_events
from emotional_engine.agents.story import StoryPlan, plan_story
from emotional_engine.domain import ArcOut, Story, StoryRequest
from emotional_engine.memory import StoryMemory, per_1000_words, remember_scene
from emotional_engine.threads import run_model
from emotional_engine.version import __version__


def _seed(request: StoryRequest) -> int:
    return request.seed if request.seed is not None else random.randrange(2**31)


async def story_events(
    request: StoryRequest,
    deps: Deps,
    done: Sequence[SceneOutcome] = (),
    memory: StoryMemory | None = None,
    plan: StoryPlan | None = None,
) -> AsyncIterator[Event]:
    """plan, then per scene scene_started, text..., checkpoint, scene_done, and story_done (the Story).

    `done`: the outcomes of scenes already written (checkpoints of an interrupted run with the same
    request and seed); writing resumes after them. `plan`: that run's plan, as its `plan` event gave it;
    without it the outline is written again, and a model-written one may come out otherwise (batched
    sampling is not bit-for-bit repeatable), leaving the rest of the story to another outline.
    `memory`: the caller's story memory, to save afterwards."""
    seed = _seed(request)
    run = StoryRun.start(request, deps, seed, memory=memory)
    if plan is None:
        with run.timings.lm():
            plan = await write_outline(
                deps.generator,
                request,
                run.profile,
                plan_story(request, run.profile.story.structure, [run.cast[0].name]),
                run.cast,
                seed,
            )
        with run.timings.models():
            plan = await run_model(keep_on_premise, plan, deps.embed, request.premise)
    else:
        plan = plan.model_copy(deep=True)  # its scenes' targets are moved as the story goes
    await run.gate()
    yield Event("plan", plan)
    targets = [s.target for s in plan.scenes]
    outcomes: list[SceneOutcome] = []
    drift = None  # the memory's account of the previous scene when it went otherwise than planned
    for i, scene_plan in enumerate(plan.scenes):
        with run.timings.scene():
            plan.scenes[i] = scene_plan = scene_plan.model_copy(update={"target": targets[i]})
            if i < len(done):  # written before an interruption: its facts and names still bind what follows
                outcome = done[i]
                await run.learn(outcome.scene.text)
                if deps.remember:
                    await remember_scene(run.memory, outcome.scene.text, i, deps.generator, seed + i)
            else:
                yield Event("scene_started", {"index": i, "target": targets[i]})
                async with aclosing(scene_events(run, plan, i, drift)) as events:
                    async for event in events:
                        yield event
                        if event.kind == "checkpoint":
                            outcome = event.data
                yield Event("scene_done", outcome.scene)
            outcomes.append(outcome)
            drift = drift_note(scene_plan, outcome.scene.text, run.cast, run.memory)
            if i + 1 < len(targets) and outcome.scene.measured is not None:
                targets[i + 1] = emotion_agent.compensate(targets[i + 1], targets[i], outcome.scene.measured.valence)
    yield Event("story_done", await _finish(run, plan, outcomes))


async def write_story(
    request: StoryRequest,
    deps: Deps,
    on_event: Callable[[Event], Awaitable[None] | None] = lambda e: None,
    done: Sequence[SceneOutcome] = (),
    memory: StoryMemory | None = None,
    plan: StoryPlan | None = None,
) -> Story:
    """The whole story; `on_event` sees every event of `story_events` as it happens (awaited when it
    is a coroutine function, so a checkpoint is kept before the next scene starts)."""
    async with aclosing(story_events(request, deps, done, memory, plan)) as events:
        async for event in events:
            if inspect.isawaitable(handled := on_event(event)):
                await handled
            if event.kind == "story_done":
                return event.data
    raise RuntimeError("the story ended without a story_done event")


async def _finish(run: StoryRun, plan: StoryPlan, outcomes: list[SceneOutcome]) -> Story:
    request, deps, story_text = run.request, run.deps, run.shown
    gate = await run.gate()
    with run.timings.models():
        texts = [o.scene.text for o in outcomes]
        coherence = await run_model(quality_agent.coherence, deps.embed, request.premise, texts)
        outlines = [o.scene.outline.line() if o.scene.outline is not None else None for o in outcomes]
        premise_adherence, plan_adherence, adherence_reasons = await run_model(
            adherence.story_adherence, deps.embed, request.premise, texts, outlines
        )
        safety = {"status": "not checked", "note": "no safety checker is configured"}
        if deps.safety is not None:
            repairs = gate.safety_repairs()
            report = await deps.safety.acheck_text(story_text, request.audience, request.culture)
            if repairs and report.status in ("passed", "flagged"):
                report = report.model_copy(update={"status": "repaired"})
            safety = report.model_copy(update={"repairs": repairs}).model_dump()
    reasons = [r for o in outcomes for r in o.reasons]
    quality = quality_agent.assess(
        emotion_distances=[o.distance for o in outcomes],
        character_consistency=float(np.mean([o.character_consistency for o in outcomes])),
        cultural_fit=float(np.mean([o.cultural_fit for o in outcomes])),
        coherence_score=coherence,
        text=story_text,
        reasons=adherence_reasons + reasons,  # what makes it not the story asked for comes first
        premise_adherence=premise_adherence,
        plan_adherence=plan_adherence,
        logprobs=run.logprobs,
        resampled_sentences=run.resampled,
    )
    for c in run.cast:  # each character's state per scene: read from their sentences; else as before; else the scene's
        c.states = []
        for o in outcomes:
            scene_mood = o.scene.measured.emotion if o.scene.measured is not None else "neutral"
            c.states.append(o.states.get(c.name) or (c.states[-1] if c.states else scene_mood))
    info = deps.generator.info
    return Story(
        title=_title(request.premise),
        text=story_text,
        culture=request.culture,
        language=request.language or "en",
        arc=ArcOut(name=plan.arc_name, target=[s.target.valence for s in plan.scenes]),
        scenes=[o.scene for o in outcomes],
        characters=run.cast,
        quality=quality,
        safety=safety,
        degraded=sorted({d for o in outcomes for d in o.degraded}),
        memory=_memory_report(run.memory, outcomes, story_text) if deps.remember else {},
        timings_ms=run.timings.report(),
        provenance={
            "engine": __version__,
            "backend": info.backend,
            "model": info.name,
            "model_sha256": info.sha256,
            "weight_format": info.weight_format,
            "model_optimized": info.optimized,
            "seed": run.seed,
            "emotion_adapter": info.adapter,
            "candidates": deps.candidates,
            "logit_steering": deps.steers,
            "structure": plan.structure,
            "plan_written_by": plan.written_by,
            "sampling": request.sampling.model_dump(),
        },
    )


def _memory_report(memory: StoryMemory, outcomes: list[SceneOutcome], story_text: str) -> dict:
    found = sum(o.contradictions_found for o in outcomes)
    return {
        "facts": len(memory.facts),
        "contradictions_found": found,
        "contradictions_found_per_1000_words": round(per_1000_words(found, len(story_text.split())), 3),
        "characters": {c.name: memory.character(c.name) for c in memory.cast},
        "relations": [list(r) for r in memory.relations()],
    }


def _title(premise: str) -> str:
    words = premise.split()
    return " ".join(words[:8]).rstrip(".,;:") + ("…" if len(words) > 8 else "")
