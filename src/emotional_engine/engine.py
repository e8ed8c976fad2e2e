"""The public story API: `Engine(settings).generate(StoryRequest) -> Story`, async and streamed.

The engine owns the long-lived parts (the language models behind its `ModelManager`, the emotion
model and its sentence embedder), loads them on first use, and hands them to the orchestrator:
one `Deps` per language model (each with its own steering table), the rest shared.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing

from emotional_engine.agents.orchestrator import story_events, write_story
from emotional_engine.agents.run import Deps, Event, SceneOutcome
from emotional_engine.agents.story import StoryPlan
from emotional_engine.config import Settings, get_settings
from emotional_engine.domain import Story, StoryRequest
from emotional_engine.lm.generator import Generator
from emotional_engine.lm.models import ModelManager
from emotional_engine.safety import SafetyChecker
from emotional_engine.session import StorySession
from emotional_engine.threads import one_openmp_thread, run_model


class Engine:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        generator: Generator | None = None,
        models: ModelManager | None = None,
        emotion=None,
        candidates: int = 4,
        agent_timeout_s: float | None = None,
        check_safety: bool = True,
    ):
        """`generator`: the one model to write with (tests); else `models`, else the configured ones.
        `check_safety=False` leaves out the audience safety check (tests on fake models). `agent_timeout_s`:
        EE_AGENT_TIMEOUT_S unless given."""
        self.settings = settings or get_settings()
        # the thread that builds the engine runs its event loop, whose small torch work (steering
        # biases, gate checks) must not start an OpenMP team beside the LM scheduler's (threads.py)
        one_openmp_thread()
        self.check_safety = check_safety
        if models is None:
            models = ModelManager.from_settings(self.settings) if generator is None else ModelManager.single(generator)
        self.models = models
        self._emotion = emotion
        self.candidates = candidates
        self.agent_timeout_s = agent_timeout_s or self.settings.agent_timeout_s
        self._shared: dict | None = None
        self._deps: dict[str, Deps] = {}

    @property
    def generator(self) -> Generator:
        """The default model's generator (loaded on first use)."""
        return self.models.get(self.models.default)

    @property
    def emotion(self):
        if self._emotion is None:
            from emotional_engine.emotion import EmotionModel

            self._emotion = EmotionModel.load()
        return self._emotion

    def deps(self, model: str | None = None) -> Deps:
        """What the orchestrator needs to write with `model` (default: the default model); built once per model."""
        model = model or self.models.default
        if model not in self._deps:
            generator = self.models.get(model)
            shared = self._shared_deps()
            self._deps[model] = Deps(
                generator=generator, steering=self._steering_table(generator, shared["emotion"]), **shared
            )
        return self._deps[model]

    async def load(self, model: str | None = None) -> Deps:
        """`deps` without blocking the event loop (a first use loads the models)."""
        await self.models.aget(model or self.models.default)  # the language model, in a thread of its own
        return await run_model(self.deps, model)  # the emotion model and steering table, in the model worker

    def pin_model(self, request: StoryRequest) -> StoryRequest:
        """`request` naming the model that serves it (the one it names, else the routing rules', else
        the default): chosen once, here; an unknown name raises `UnknownModelError`."""
        return request.model_copy(update={"model": self.models.choose(request)})

    async def adeps(self, request: StoryRequest) -> Deps:
        """The deps of the model `request` names (pinned first if it names none)."""
        return await self.load(request.model or self.models.choose(request))

    def _shared_deps(self) -> dict:
        """The parts every language model's `Deps` shares; loaded once."""
        if self._shared is None:
            from emotional_engine.agents import choice
            from emotional_engine.agents import technical as technical_agent
            from emotional_engine.culture.lexicon import name_index

            name_index()  # built once (every culture's names), here rather than inside the first scene
            technical_agent.check_text("Warm up.", "adult")  # textstat loads its pronunciation dictionary
            model = self.emotion
            self._shared = dict(
                emotion=model,
                candidates=self.candidates,
                agent_timeout_s=self.agent_timeout_s,
                embed=lambda texts: model.embedder.encode(texts, batch_size=32, normalize_embeddings=True),
                safety=SafetyChecker.load() if self.check_safety else None,
            )
            # a first call of each model costs much more than the next (allocations, kernel choice):
            # paid here, at load, rather than by the first beat's first sentence
            sample = ["The keeper climbed the stairs.", "A letter lay on the table."]
            model.score_passages(sample)
            choice.candidates(self._shared["embed"], sample, [0.0, 0.0], [None, None], sample)  # MiniLM, lemmas
            if self._shared["safety"] is not None:
                self._shared["safety"].check_sentences(sample, "adult")
        return self._shared

    def _steering_table(self, generator: Generator, emotion):
        """The logit-steering table for `generator`'s vocabulary, when it takes logits processors."""
        if not self.settings.logit_steering or not generator.supports_logits_processors:
            return None
        vocabulary = generator.vocabulary()
        if vocabulary is None:
            return None
        from emotional_engine.emotion.model import HEAD_PATH
        from emotional_engine.emotion.steering import load_or_build
        from emotional_engine.lm.gguf import default_cache_dir

        return load_or_build(vocabulary, emotion, HEAD_PATH, self.settings.cache_dir or default_cache_dir())

    async def agenerate(
        self, request: StoryRequest, on_event=None, done: Sequence[SceneOutcome] = (), plan: StoryPlan | None = None
    ) -> Story:
        """`done`: checkpointed scenes of an interrupted run (same request and seed) to resume after;
        `plan`: that run's plan (its `plan` event), kept for the rest of the story."""
        return await write_story(request, await self.adeps(request), on_event or (lambda e: None), done, plan=plan)

    def generate(self, request: StoryRequest, on_event=None) -> Story:
        return asyncio.run(self.agenerate(request, on_event))

    async def session(self, request: StoryRequest, turns: int = 12) -> StorySession:
        """An interactive story: `await s.turn(action)` or `async for text in s.stream_turn(action)`."""
        return StorySession(request, await self.adeps(request), turns)

    async def stream(self, request: StoryRequest) -> AsyncIterator[Event]:
        """plan, scene_started, text, scene_done ... story_done, as they happen."""
        async with aclosing(story_events(request, await self.adeps(request))) as events:
            async for event in events:
                yield event
