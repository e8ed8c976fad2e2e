"""One story run's state, apart from the dependencies injected into it (pydantic-ai's split).

A `StoryRun` holds what a story or an interactive session knows while it is written: the request
and its seed, the culture profile, the cast, the story memory, the sentence gate every sentence
passes (with the character checker it shares), the text shown so far and where the time went.
Stories (`agents/orchestrator.py`) and sessions (`session.py`) both write through one
(`agents/scene_writer.py`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel

from emotional_engine.agents import character as character_agent
from emotional_engine.agents.character_check import CharacterChecker
from emotional_engine.agents.gate import SentenceGate
from emotional_engine.agents.sentence_checks import CharacterCheck, MemoryCheck, SafetyCheck, SensitivityCheck, rewriter
from emotional_engine.culture import CultureProfile, load_profile
from emotional_engine.domain import Character, Scene, StoryRequest
from emotional_engine.emotion.steering import TokenAffect
from emotional_engine.lm.generator import Generator
from emotional_engine.memory import StoryMemory
from emotional_engine.safety import SafetyChecker


class EmotionScorer(Protocol):
    def score_passages(self, texts: list[str]) -> list[Any]: ...


@dataclass
class Deps:
    """What a run writes and measures with; shared by every run on the same language model."""

    generator: Generator
    emotion: EmotionScorer
    embed: Callable[[list[str]], np.ndarray]
    candidates: int = 4
    agent_timeout_s: float = 30.0
    steering: TokenAffect | None = None  # logit steering table for the generator's vocabulary
    safety: SafetyChecker | None = None  # the audience check every sentence passes; None: not checked
    remember: bool = True  # keep a story memory (retrieval in prompts, contradictions caught per sentence)

    @property
    def steers(self) -> bool:
        """Whether scenes are steered by a logit bias (a table, and a generator that takes processors)."""
        return self.steering is not None and self.generator.supports_logits_processors


@dataclass
class Event:
    """plan | scene_started | text | scene_done | story_done; `checkpoint` (a SceneOutcome) before each
    scene_done, for callers that save progress and resume with `write_story(..., done=...)`."""

    kind: str
    data: Any = None


class SceneOutcome(BaseModel):
    scene: Scene
    distance: float
    character_consistency: float
    cultural_fit: float
    reasons: list[str]
    degraded: list[str]
    contradictions_found: int = 0  # sentences that contradicted the story memory (rewritten or dropped)
    states: dict[str, str] = {}  # cast member -> emotion in this scene (those the scene mentions)


@dataclass
class Timings:
    """Milliseconds spent in the language model and in the emotion and embedding models; the rest
    of a scene's time is orchestration overhead."""

    lm_ms: float = 0.0
    models_ms: float = 0.0  # emotion and embedding model forward passes
    per_scene_overhead_ms: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    @contextmanager
    def _adding_to(self, field_name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            setattr(self, field_name, getattr(self, field_name) + 1000 * (time.perf_counter() - t0))

    def lm(self) -> AbstractContextManager[None]:
        """Time spent waiting on the language model."""
        return self._adding_to("lm_ms")

    def models(self) -> AbstractContextManager[None]:
        """Time spent in the emotion and embedding models."""
        return self._adding_to("models_ms")

    @contextmanager
    def scene(self) -> Iterator[None]:
        """A scene's wall time less what the models took in it goes to `per_scene_overhead_ms`."""
        t0, lm0, models0 = time.perf_counter(), self.lm_ms, self.models_ms
        yield
        elapsed = 1000 * (time.perf_counter() - t0)
        self.per_scene_overhead_ms.append(elapsed - (self.lm_ms - lm0) - (self.models_ms - models0))

    def report(self) -> dict[str, float]:
        return {
            "total": round(1000 * (time.perf_counter() - self.started), 1),
            "language_model": round(self.lm_ms, 1),
            "emotion_and_embedding_models": round(self.models_ms, 1),
            "orchestration_overhead_per_scene": round(float(np.mean(self.per_scene_overhead_ms)), 2),
        }


@dataclass
class StoryRun:
    request: StoryRequest
    deps: Deps
    seed: int
    profile: CultureProfile
    cast: list[Character]
    memory: StoryMemory
    timings: Timings = field(default_factory=Timings)
    resampled: int = 0  # sentences written again before they were shown
    logprobs: list[float] = field(default_factory=list)  # mean token log-probability of each sentence shown
    _gate: SentenceGate | None = None
    _checker: CharacterChecker | None = None

    @classmethod
    def start(cls, request: StoryRequest, deps: Deps, seed: int, *, memory: StoryMemory | None = None) -> StoryRun:
        """A run with the cast the request asks for (or the culture's), and a story memory: `memory`
        when given (the caller's, to save afterwards; it is reset to the cast), else a new one."""
        profile = load_profile(request.culture)
        cast = character_agent.build_cast(request, profile)
        if memory is None:
            memory = StoryMemory(cast, deps.embed)
        else:
            memory.embed = memory.embed or deps.embed
            memory.reset(cast)
        return cls(request, deps, seed, profile, cast, memory)

    @property
    def shown(self) -> str:
        """The story text shown so far (every sentence the gate let through, with its separators)."""
        return self._gate.shown if self._gate is not None else ""

    async def gate(self) -> SentenceGate:
        """The gate every sentence passes, with its checks in order; built on first use (the
        character checker loads name lists, in a thread)."""
        if self._gate is None:
            d, request = self.deps, self.request
            self._checker = await asyncio.to_thread(character_agent.checker_for, self.cast, self.profile)
            rewrite = rewriter(d.generator, self.seed)
            checks = [
                *([SafetyCheck(d.safety, request.audience, rewrite)] if d.safety else []),
                SensitivityCheck(self.profile.tag, request.audience, rewrite),
                CharacterCheck(self._checker, rewrite),
                *([MemoryCheck(self.memory, self.cast, rewrite)] if d.remember else []),
            ]
            self._gate = SentenceGate(self.profile.tag, [c.name for c in self.cast], self.seed, checks)
        return self._gate

    async def checker(self) -> CharacterChecker:
        await self.gate()
        return self._checker

    async def learn(self, text: str) -> None:
        """Text written before (a resumed story's scenes, a restored session's beats): its facts and
        names bind what follows."""
        checker, gate = await self.checker(), await self.gate()
        checker.learn(checker.check(text))
        gate.remember(text)
