"""The public story API: `Engine(settings).generate(StoryRequest) -> Story`, async and streamed.

The engine owns the long-lived parts (the language model behind its `Generator`, the emotion
model and its sentence embedder), loads them on first use, and hands them to the orchestrator.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from emotional_engine.agents.orchestrator import Deps, Event, SceneOutcome, write_story
from emotional_engine.config import Settings, get_settings
from emotional_engine.domain import Story, StoryRequest
from emotional_engine.lm.backends import Generator, make_generator
from emotional_engine.safety import SafetyChecker
from emotional_engine.session import StorySession
from emotional_engine.threads import run_model


class Engine:
    def __init__(self, settings: Settings | None = None, *, generator: Generator | None = None,
                 emotion=None, candidates: int = 4, agent_timeout_s: float = 30.0, check_safety: bool = True):
        """`check_safety=False` leaves out the audience safety check (tests on fake models)."""
        self.settings = settings or get_settings()
        self.check_safety = check_safety
        self._generator = generator
        self._emotion = emotion
        self.candidates = candidates
        self.agent_timeout_s = agent_timeout_s
        self._deps: Deps | None = None

    @property
    def generator(self) -> Generator:
        if self._generator is None:
            self._generator = make_generator(self.settings)
        return self._generator

    @property
    def emotion(self):
        if self._emotion is None:
            from emotional_engine.emotion import EmotionModel

            self._emotion = EmotionModel.load()
        return self._emotion

    def deps(self) -> Deps:
        """The loaded models and settings the orchestrator needs; built once."""
        if self._deps is None:
            self._deps = self._build_deps()
        return self._deps

    def _build_deps(self) -> Deps:
        from emotional_engine.agents import technical as technical_agent
        from emotional_engine.agents.cultural import name_index

        name_index()  # built once (every culture's names), here rather than inside the first scene
        technical_agent.check_text("Warm up.", "adult")  # textstat loads its pronunciation dictionary
        model = self.emotion
        return Deps(generator=self.generator, emotion=model,
                    embed=lambda texts: model.embedder.encode(texts, batch_size=32, normalize_embeddings=True),
                    candidates=self.candidates, agent_timeout_s=self.agent_timeout_s,
                    steering=self._steering_table(model),
                    safety=SafetyChecker.load() if self.check_safety else None)

    def _steering_table(self, model):
        """The logit-steering table for the generator's vocabulary, when it takes logits processors."""
        vocabulary = getattr(self.generator, "vocabulary", None)
        if not self.settings.logit_steering or not self.generator.supports_logits_processors or vocabulary is None:
            return None
        from emotional_engine.emotion.model import HEAD_PATH
        from emotional_engine.emotion.steering import load_or_build
        from emotional_engine.lm.gguf import default_cache_dir

        return load_or_build(vocabulary(), model, HEAD_PATH, self.settings.cache_dir or default_cache_dir())

    async def agenerate(self, request: StoryRequest, on_event=None, done: Sequence[SceneOutcome] = ()) -> Story:
        """`done`: checkpointed scenes of an interrupted run (same request and seed) to resume after."""
        deps = await run_model(self.deps)  # first use loads models: off the loop, in the model worker
        return await write_story(request, deps, on_event or (lambda e: None), done)

    def generate(self, request: StoryRequest, on_event=None) -> Story:
        return asyncio.run(self.agenerate(request, on_event))

    async def session(self, request: StoryRequest, turns: int = 12) -> StorySession:
        """An interactive story: `await s.turn(action)` or `async for text in s.stream_turn(action)`."""
        return StorySession(request, await run_model(self.deps), turns)

    async def stream(self, request: StoryRequest) -> AsyncIterator[Event]:
        """plan, scene_started, text, scene_done ... story_done, as they happen."""
        q: asyncio.Queue[Event | BaseException] = asyncio.Queue()

        async def run():
            try:
                await self.agenerate(request, q.put_nowait)
            except BaseException as e:  # handed to the consumer
                q.put_nowait(e)

        task = asyncio.create_task(run())
        try:
            while True:
                item = await q.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.kind == "story_done":
                    return
        finally:
            task.cancel()
