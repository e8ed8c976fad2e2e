"""The orchestrator: plan the story, then for each scene write candidates, choose, stream, check.
Knows nothing of HTTP.

The plan is the rule skeleton (`agents/story.py`) with the model's outline on it (`agents/outline.py`:
one constrained line per scene, with the builtin model); the scene prompts carry the outline, and a
scene that strays from it hands the story memory's account of what happened to the next prompt.

Per scene: the facts the story memory holds that bear on the scene go into its prompt with the
plan, the cast and the recent text; the emotional-intelligence agent's guidance goes into the
prompt, the sampler and a logit bias (a different strength per candidate; the emotion adapter on
every other one, its context moving sentence by sentence from the previous scene's target). The
candidates are written concurrently (the builtin runtime batches them) until each has its first
SELECT_AFTER_SENTENCES sentences; the emotion model scores those openings in one
batched call in a worker thread, the one nearest the target goes on and the others stop. The chosen
candidate streams sentence by sentence through the gate (`sentence_gate`: names, safety,
sensitivity, characters, contradictions with memory), which repairs before anything is shown; a
scene that comes out under half its length (the model stopped, or the gate dropped its talk about
the task) is written on from where it stops, up to TOP_UPS times. The finished scene is measured;
the technical and character agents check it and the memory remembers it, in parallel under a
timeout each; the next scene's target compensates for a miss. An agent that
fails or times out is skipped and named in `degraded`. `generate` and `stream` run the same
procedure: same seed, same story.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel

from emotional_engine import __version__
from emotional_engine.agents import character as character_agent
from emotional_engine.agents import emotion as emotion_agent
from emotional_engine.agents import quality as quality_agent
from emotional_engine.agents import technical as technical_agent
from emotional_engine.agents.base import run_parallel
from emotional_engine.agents.character_check import CharacterChecker
from emotional_engine.agents.gate import SentenceGate
from emotional_engine.agents.outline import drift_note, write_outline
from emotional_engine.agents.prompts import FACT_TOKENS, prompt_budget, scene_messages
from emotional_engine.agents.sentence_checks import (CharacterCheck, MemoryCheck, SafetyCheck, SensitivityCheck,
                                                     rewriter)
from emotional_engine.agents.story import StoryPlan, plan_story
from emotional_engine.agents.streaming import Sentence, SentenceStream
from emotional_engine.culture import load_profile
from emotional_engine.domain import ArcOut, Character, Measurement, Scene, Story, StoryRequest
from emotional_engine.emotion.steering import LogitBias, TokenAffect
from emotional_engine.lm.generator import Generator
from emotional_engine.lm.sampling import SamplingParams
from emotional_engine.memory import StoryMemory, per_1000_words, remember_scene
from emotional_engine.safety import SafetyChecker
from emotional_engine.threads import run_model


SELECT_AFTER_SENTENCES = 2  # candidates race to this many sentences before one is chosen
SHORT_SCENE = 0.5  # a scene shown with fewer than this share of its words goes on...
TOP_UPS = 2  # ...at most this many times


class EmotionScorer(Protocol):
    def score_passages(self, texts: list[str]) -> list[Any]: ...


@dataclass
class Deps:
    generator: Generator
    emotion: EmotionScorer
    embed: Callable[[list[str]], np.ndarray]
    candidates: int = 4
    agent_timeout_s: float = 30.0
    steering: TokenAffect | None = None  # logit steering table for the generator's vocabulary
    safety: SafetyChecker | None = None  # the audience check every sentence passes; None: not checked
    remember: bool = True  # keep a story memory (retrieval in prompts, contradictions caught per sentence)


@dataclass
class Event:
    """plan | scene_started | text | scene_done | story_done; `checkpoint` (a SceneOutcome) before each
    scene_done, for callers that save progress and resume with `write_story(..., done=...)`."""

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
    contradictions_found: int = 0  # sentences that contradicted the story memory (rewritten or dropped)
    states: dict[str, str] = {}  # cast member -> emotion in this scene (those the scene mentions)


def _seed(request: StoryRequest) -> int:
    return request.seed if request.seed is not None else random.randrange(2**31)


async def write_story(request: StoryRequest, deps: Deps, on_event: Callable[[Event], None] = lambda e: None,
                      done: Sequence[SceneOutcome] = (), memory: StoryMemory | None = None,
                      plan: StoryPlan | None = None) -> Story:
    """`done`: the outcomes of scenes already written (checkpoints of an interrupted run with the same
    request and seed); writing resumes after them. `plan`: that run's plan, as its `plan` event gave it;
    without it the outline is written again, and a model-written one may come out otherwise (batched
    sampling is not bit-for-bit repeatable), leaving the rest of the story to another outline."""
    t_start = time.perf_counter()
    timing = _Timing()
    seed = _seed(request)
    profile = load_profile(request.culture)
    cast = character_agent.build_cast(request.model_copy(update={"seed": seed}), profile)
    t0 = time.perf_counter()
    if plan is None:
        plan = await write_outline(deps.generator, request, profile, plan_story(request, profile.story.structure,
                                                                                [cast[0].name]), cast, seed)
    else:
        plan = plan.model_copy(deep=True)  # its scenes' targets are moved as the story goes
    timing.lm_ms += 1000 * (time.perf_counter() - t0)
    if memory is None:
        memory = StoryMemory(cast, deps.embed)
    else:  # the caller's memory, to save afterwards
        memory.embed = memory.embed or deps.embed
        memory.reset(cast)
    gate, checker = await sentence_gate(request, deps, profile, cast, seed, memory)
    on_event(Event("plan", plan))
    targets = [s.target for s in plan.scenes]
    outcomes: list[SceneOutcome] = []
    story_text = ""
    drift = None  # the memory's account of the previous scene when it went otherwise than planned
    for i, scene_plan in enumerate(plan.scenes):
        t_scene = time.perf_counter()
        lm0, models0 = timing.lm_ms, timing.models_ms
        plan.scenes[i] = scene_plan = scene_plan.model_copy(update={"target": targets[i]})
        if i < len(done):  # written before an interruption: its facts and names still bind what follows
            outcome = done[i]
            checker.learn(checker.check(outcome.scene.text))
            gate.remember(outcome.scene.text)
            if deps.remember:
                await remember_scene(memory, outcome.scene.text, i, deps.generator, seed + i)
        else:
            on_event(Event("scene_started", {"index": i, "target": targets[i]}))
            gate.start_scene(i)
            outcome = await _write_scene(request, deps, profile, plan, cast, checker, memory, i, story_text, seed,
                                         timing, gate, on_event, drift)
        outcomes.append(outcome)
        text = outcome.scene.text
        drift = drift_note(scene_plan, text, cast, memory)
        if text:
            story_text = f"{story_text}\n\n{text}" if story_text else text
        if i >= len(done):
            on_event(Event("checkpoint", outcome))
            on_event(Event("scene_done", outcome.scene))
        if i + 1 < len(targets) and outcome.scene.measured is not None:
            targets[i + 1] = emotion_agent.compensate(targets[i + 1], targets[i], outcome.scene.measured.valence)
        elapsed = 1000 * (time.perf_counter() - t_scene)
        timing.per_scene_overhead_ms.append(elapsed - (timing.lm_ms - lm0) - (timing.models_ms - models0))

    story = await _finish(request, deps, plan, cast, outcomes, story_text, seed, timing, t_start,
                          gate.safety_repairs(), memory)
    on_event(Event("story_done", story))
    return story


def _token_allowance(words: int) -> int:
    """The most tokens a scene (or the rest of one) of `words` words may take."""
    return int(words * 1.7) + 16


async def _write_scene(request, deps: Deps, profile, plan: StoryPlan, cast: list[Character], checker: CharacterChecker,
                       memory: StoryMemory, i: int, story_text: str, seed: int, timing: _Timing, gate: SentenceGate,
                       on_event: Callable[[Event], None], drift: str | None = None) -> SceneOutcome:
    sp = plan.scenes[i]
    guide = emotion_agent.guidance(sp.target, request.sampling.temperature)
    max_tokens = _token_allowance(sp.words)
    count = deps.generator.count_tokens
    facts, states = [drift] if drift else [], []
    if deps.remember and memory.facts:  # what earlier scenes established that bears on this one, and on its outline
        planned = sp.outline.line() if sp.outline is not None else ""
        query = f"{sp.goal}. {planned} {sp.pov or ''}. {story_text[-600:]}"
        t0 = time.perf_counter()
        facts += [f.text for f in await run_model(memory.relevant, query, 8, FACT_TOKENS, count)]
        timing.models_ms += 1000 * (time.perf_counter() - t0)
        states = memory.character_states()
    messages = scene_messages(request, profile, plan, cast, sp, guide, story_text, facts=facts, states=states,
                              budget=prompt_budget(deps.generator, max_tokens), count=count)
    n = max(1, deps.candidates)
    # the adapter's context sentence by sentence, from the previous scene's target to this one's
    schedule = emotion_agent.sentence_contexts(
        deps.generator.emotion_context(plan.scenes[i - 1].target.emotion) if i else None,
        deps.generator.emotion_context(sp.target.emotion), sp.words)
    params = [SamplingParams(max_tokens=max_tokens, temperature=guide.temperature,
                             top_p=request.sampling.top_p, repetition_penalty=request.sampling.repetition_penalty,
                             seed=seed * 1009 + i * 31 + k,
                             # the adapter on every other candidate: measured alone it steers, on top of
                             # logit steering it did not help (docs/benchmarks.md), so the reranker decides
                             emotion_schedule=schedule if k % 2 else None)
              for k in range(n)]
    steer = deps.steering is not None and deps.generator.supports_logits_processors
    processors = [[LogitBias(deps.steering.bias(sp.target.emotion, sp.target.valence,
                                                emotion_agent.steering_strength(k, n)))] if steer else []
                  for k in range(n)]
    # the candidates race to their first sentences; the one nearest the target goes on, the rest stop
    t0 = time.perf_counter()
    streams = [SentenceStream(deps.generator.stream(messages, p, processors=procs))
               for p, procs in zip(params, processors)]
    await asyncio.gather(*(s.fill(SELECT_AFTER_SENTENCES) for s in streams))
    timing.lm_ms += 1000 * (time.perf_counter() - t0)
    t0 = time.perf_counter()
    openings = await run_model(deps.emotion.score_passages, [s.buffered_text() for s in streams])
    timing.models_ms += 1000 * (time.perf_counter() - t0)
    choice = emotion_agent.choose(openings, sp.target)
    for k, s in enumerate(streams):
        if k != choice.index:
            await s.aclose()

    report = gate.scene
    text = ""

    async def show(stream: SentenceStream) -> None:
        """Stream the sentences through the gate; what it lets through is shown and joins the scene."""
        nonlocal text
        while True:
            t0 = time.perf_counter()
            sentence = await stream.next_sentence()
            timing.lm_ms += 1000 * (time.perf_counter() - t0)
            if sentence is None:
                return
            shown = await gate.check(sentence.text)
            if shown is None:
                continue
            piece = Sentence(shown, sentence.new_paragraph).joined_to(text)
            text += piece
            delta = piece if (text != piece or not story_text) else "\n\n" + piece
            gate.shown_as(delta)
            on_event(Event("text", {"scene": i, "text": delta}))

    await show(streams[choice.index])
    # the model stopped early, or the gate dropped most of what it wrote (talk about its task,
    # fragments; 9 of the consistency benchmark's 409 scenes came out empty): the chosen
    # candidate's settings go on from what was shown
    for extra in range(1, TOP_UPS + 1):
        if len(text.split()) >= SHORT_SCENE * sp.words:
            break
        missing = sp.words - len(text.split())
        so_far = "\n\n".join(t for t in (story_text, text) if t)
        p = params[choice.index].model_copy(update={"seed": params[choice.index].seed + 7919 * extra,
                                                    "max_tokens": _token_allowance(missing)})
        more = scene_messages(request, profile, plan, cast, sp.model_copy(update={"words": missing}), guide, so_far,
                              facts=facts, states=states, going_on=bool(text),
                              budget=prompt_budget(deps.generator, p.max_tokens), count=count)
        await show(SentenceStream(deps.generator.stream(more, p, processors=processors[choice.index])))

    t0 = time.perf_counter()
    (m,) = await run_model(deps.emotion.score_passages, [text or "."])
    timing.models_ms += 1000 * (time.perf_counter() - t0)

    async def technical():
        return await asyncio.to_thread(technical_agent.check_text, text, request.audience, sp.words)

    async def character():
        """Consistency of the text as written (before the gate's repairs); states and facts from the final text."""
        as_written = await asyncio.to_thread(checker.check, " ".join(report.raw))
        final = await asyncio.to_thread(checker.check, text)
        checker.learn(final)
        states = await run_model(character_agent.scene_states, final, deps.emotion.score_passages)
        return _Checked(character_consistency=as_written.character_consistency, states=states)

    async def remember():
        t0 = time.perf_counter()
        await remember_scene(memory, text, i, deps.generator, seed + i)
        timing.models_ms += 1000 * (time.perf_counter() - t0)

    results = await run_parallel({
        "technical": (technical, deps.agent_timeout_s),
        "character": (character, deps.agent_timeout_s),
        **({"memory": (remember, deps.agent_timeout_s)} if deps.remember and text else {}),
    })
    degraded = [name for name, r in results.items() if not r.ok]
    reasons = [f"scene {i + 1}: {r}" for r in report.reasons]
    character_consistency, states = 1.0, {}
    if results["character"].ok:
        character_consistency = results["character"].output.character_consistency
        states = results["character"].output.states
    if results["technical"].ok:
        reasons += [f"scene {i + 1}: {issue}" for issue in results["technical"].output.issues]
    measured = Measurement(valence=float(np.clip(m.valence, -1, 1)), arousal=float(np.clip(m.arousal, -1, 1)),
                           emotion=m.emotion, scores=m.scores)
    scene = Scene(index=i, text=text, target=sp.target, measured=measured, outline=sp.outline)
    return SceneOutcome(scene=scene, distance=emotion_agent.distance(m, sp.target),
                        character_consistency=character_consistency, cultural_fit=report.cultural_fit,
                        reasons=reasons, degraded=degraded, states=states,
                        contradictions_found=sum(r.startswith("memory:") for r in report.reasons))


class _Checked(BaseModel):
    character_consistency: float
    states: dict[str, str]


async def _finish(request, deps: Deps, plan: StoryPlan, cast: list[Character], outcomes: list[SceneOutcome],
                  story_text: str, seed: int, timing: _Timing, t_start: float, safety_repairs: list,
                  memory: StoryMemory) -> Story:
    t0 = time.perf_counter()
    coherence = await run_model(quality_agent.coherence, deps.embed, request.premise,
                                        [o.scene.text for o in outcomes])
    safety = {"status": "not checked", "note": "no safety checker is configured"}
    if deps.safety is not None:
        report = await deps.safety.acheck_text(story_text, request.audience, request.culture)
        if safety_repairs and report.status in ("passed", "flagged"):
            report = report.model_copy(update={"status": "repaired"})
        safety = report.model_copy(update={"repairs": safety_repairs}).model_dump()
    timing.models_ms += 1000 * (time.perf_counter() - t0)
    reasons = [r for o in outcomes for r in o.reasons]
    quality = quality_agent.assess(
        emotion_distances=[o.distance for o in outcomes],
        character_consistency=float(np.mean([o.character_consistency for o in outcomes])),
        cultural_fit=float(np.mean([o.cultural_fit for o in outcomes])),
        coherence_score=coherence, text=story_text, reasons=reasons,
    )
    for c in cast:  # each character's state per scene: read from their sentences; else as before; else the scene's
        c.states = []
        for o in outcomes:
            scene_mood = o.scene.measured.emotion if o.scene.measured is not None else "neutral"
            c.states.append(o.states.get(c.name) or (c.states[-1] if c.states else scene_mood))
    degraded = sorted({d for o in outcomes for d in o.degraded})
    timing.total_ms = 1000 * (time.perf_counter() - t_start)
    info = deps.generator.info
    return Story(
        title=_title(request.premise), text=story_text, culture=request.culture,
        language=request.language or "en",
        arc=ArcOut(name=plan.arc_name, target=[s.target.valence for s in plan.scenes]),
        scenes=[o.scene for o in outcomes], characters=cast, quality=quality,
        safety=safety,
        degraded=degraded,
        memory=_memory_report(memory, outcomes, story_text) if deps.remember else {},
        timings_ms={"total": round(timing.total_ms, 1), "language_model": round(timing.lm_ms, 1),
                    "emotion_and_embedding_models": round(timing.models_ms, 1),
                    "orchestration_overhead_per_scene": round(float(np.mean(timing.per_scene_overhead_ms)), 2)},
        provenance={"engine": __version__, "backend": info.backend, "model": info.name, "model_sha256": info.sha256,
                    "weight_format": info.weight_format, "seed": seed, "emotion_adapter": info.adapter, "candidates": deps.candidates,
                    "logit_steering": deps.steering is not None and deps.generator.supports_logits_processors,
                    "structure": plan.structure, "plan_written_by": plan.written_by, "sampling": request.sampling.model_dump()},
    )


async def sentence_gate(request: StoryRequest, deps: Deps, profile, cast: list[Character], seed: int,
                        memory: StoryMemory) -> tuple[SentenceGate, CharacterChecker]:
    """The gate every sentence of a story or session passes, with its checks in order."""
    checker = await asyncio.to_thread(character_agent.checker_for, cast, profile)  # first use loads name lists
    rewrite = rewriter(deps.generator, seed)
    checks = [*([SafetyCheck(deps.safety, request.audience, rewrite)] if deps.safety else []),
              SensitivityCheck(profile.tag, request.audience, rewrite), CharacterCheck(checker, rewrite),
              *([MemoryCheck(memory, cast, rewrite)] if deps.remember else [])]
    return SentenceGate(profile.tag, [c.name for c in cast], seed, checks), checker


def _memory_report(memory: StoryMemory, outcomes: list[SceneOutcome], story_text: str) -> dict:
    found = sum(o.contradictions_found for o in outcomes)
    return {"facts": len(memory.facts), "contradictions_found": found,
            "contradictions_found_per_1000_words": round(per_1000_words(found, len(story_text.split())), 3),
            "characters": {c.name: memory.character(c.name) for c in memory.cast},
            "relations": [list(r) for r in memory.relations()]}


def _title(premise: str) -> str:
    words = premise.split()
    return " ".join(words[:8]).rstrip(".,;:") + ("…" if len(words) > 8 else "")
