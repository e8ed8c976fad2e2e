"""Writing one scene of a story, or one beat of a session: candidates, choice, the gate, measurement.

`Draft` is what stories and sessions share. The candidates (one for a beat) are written
concurrently (the builtin runtime batches them) until each has its first SELECT_AFTER_SENTENCES
sentences; the emotion model scores those openings in one batched call in a worker thread, the
one nearest the target goes on and the others stop. The chosen candidate streams sentence by
sentence through the run's gate (names, safety, sensitivity, characters, contradictions with
memory), which repairs before anything is shown.

`scene_events` writes a story's scene with it: the prompt carries what the story memory recalls,
the emotional-intelligence agent's guidance goes into the prompt, the sampler and a logit bias
(a different strength per candidate; the emotion adapter on every other one, its context moving
sentence by sentence from the previous scene's target). A scene that comes out under half its
length (the model stopped, or the gate dropped its talk about the task) is written on from where
it stops, up to TOP_UPS times. The finished scene is measured; the technical and character
agents check it and the memory remembers it, in parallel under a timeout each; an agent that
fails or times out is skipped and named in `degraded`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass

from pydantic import BaseModel

from emotional_engine.agents import adherence, choice
from emotional_engine.agents import character as character_agent
from emotional_engine.agents import emotional_intelligence as emotion_agent
from emotional_engine.agents import technical as technical_agent
from emotional_engine.agents.base import run_parallel
from emotional_engine.agents.prompts import FACT_TOKENS, opening_words, prompt_budget, scene_messages
from emotional_engine.agents.run import Event, SceneOutcome, StoryRun
from emotional_engine.agents.story import ScenePlan, StoryPlan
from emotional_engine.agents.streaming import Sentence, SentenceStream
from emotional_engine.domain import Measurement, Scene, SceneTarget
from emotional_engine.emotion.steering import LogitBias
from emotional_engine.lm.generator import Prompt
from emotional_engine.lm.sampling import LogitsProcessor, SamplingParams
from emotional_engine.memory import remember_scene
from emotional_engine.threads import run_agent_work, run_model

SELECT_AFTER_SENTENCES = 2  # candidates race to this many sentences before one is chosen
SENTENCE_TRIES = 2  # a rejected sentence is written again at most this many times...
RESAMPLES_PER_DRAFT = 6  # ...and a scene or beat writes at most this many sentences again
SHORT_SCENE = 0.5  # a scene shown with fewer than this share of its words goes on...
TOP_UPS = 2  # ...at most this many times


def token_allowance(words: int) -> int:
    """The most tokens a scene or beat (or the rest of one) of `words` words may take."""
    return int(words * 1.7) + 16


async def measure(run: StoryRun, text: str) -> Measurement:
    """The emotion model's reading of `text`, valence and arousal clamped to [-1, 1]."""
    with run.timings.models():
        (m,) = await run_model(run.deps.emotion.score_passages, [text])
    return Measurement(
        valence=max(-1.0, min(1.0, m.valence)),
        arousal=max(-1.0, min(1.0, m.arousal)),
        emotion=m.emotion,
        scores=m.scores,
    )


def steering_bias(run: StoryRun, target: SceneTarget, strength: float) -> list[LogitsProcessor]:
    """The logit bias towards `target` at `strength`; none when the run does not steer."""
    return [LogitBias(run.deps.steering.bias(target.emotion, target.valence, strength))] if run.deps.steers else []


@dataclass
class Shown:
    piece: str  # the sentence with its separator within the scene (none for the scene's first)
    delta: str  # the same, with the separator from the story shown before it


# the prompt to go on from what is shown so far, and the words it begins the reply with
Resume = Callable[[], tuple[Prompt, str]]


class Draft:
    """A scene or beat being written towards `target`; `text` is what has been shown of it.
    `references`: what it must stay relevant to (the premise and the scene's plan, or the action);
    `words`: where it ends, at the first sentence end within half a sentence of it (a model continuing
    the story does not stop at a scene's length by itself)."""

    def __init__(self, run: StoryRun, target: SceneTarget, references: Sequence[str] = (), words: int | None = None):
        self.run = run
        self.words = words
        self.target = target
        self.references = list(references)
        self.text = ""
        self.chosen = 0  # which of the first write's candidates went on (a top-up goes on with its settings)
        self.resampled = 0  # sentences written again (all writes of this draft together)
        self.prefill: dict | None = None  # the chosen first write's prompt and reused tokens (SentenceStream)

    async def write(
        self,
        messages: Prompt,
        params: Sequence[SamplingParams],
        processors: Sequence[Sequence[LogitsProcessor]],
        kv_key: str | None = None,
        *,
        opening: str = "",
        resume: Resume | None = None,
        select_after: int = SELECT_AFTER_SENTENCES,
        grace: float | None = None,
    ) -> AsyncIterator[Shown]:
        """Write the candidates (`params[k]` with `processors[k]`; the prompt began the reply with
        `opening`), choose one on its first `select_after` sentences, and yield its sentences as the
        gate lets them through. With `grace`, the choice waits for the others at most that share of the
        time the first candidate took (a beat's first text waits for no long opening); those not ready
        by then are dropped. With `resume`, a sentence that `choice.sentence_problem` rejects is
        written again from the same prefix. `kv_key` (a session's id, a story's scene) has the runtime
        keep the KV cache, so a resample prefills only what is new."""
        run, gen = self.run, self.run.deps.generator
        streams = [
            SentenceStream(gen.stream(messages, p, kv_key=kv_key, processors=procs), opening)
            for p, procs in zip(params, processors)
        ]
        chosen = 0
        if len(streams) > 1:
            with run.timings.lm():
                ready = await _filled(streams, select_after, grace)
            chosen = self.chosen = ready[await self._choose([streams[k] for k in ready])]
            for k, s in enumerate(streams):
                if k != chosen:
                    await s.aclose()
        go_on = _Resampler(params[chosen], processors[chosen], kv_key, resume) if resume is not None else None
        try:
            async for shown in self._through_gate(streams[chosen], go_on):
                yield shown
        finally:
            self.prefill = self.prefill or streams[chosen].prefill

    def full(self) -> bool:
        return self.words is not None and len(self.text.split()) >= self.words - emotion_agent.WORDS_PER_SENTENCE // 2

    async def _choose(self, streams: list[SentenceStream]) -> int:
        run = self.run
        texts = [s.buffered_text() for s in streams]
        with run.timings.models():
            openings = await run_model(run.deps.emotion.score_passages, texts)
            found = await run_model(
                choice.candidates,
                run.deps.embed,
                texts,
                [emotion_agent.distance(m, self.target) for m in openings],
                [s.buffered_logprob() for s in streams],
                self.references,
            )
        return choice.choose(found)

    async def _through_gate(self, stream: SentenceStream, go_on: _Resampler | None) -> AsyncIterator[Shown]:
        gate = await self.run.gate()
        tries = 0  # of the sentence at hand
        try:
            while True:
                with self.run.timings.lm():
                    sentence = await stream.next_sentence()
                if sentence is None or self.full():
                    return
                if go_on is not None and tries < SENTENCE_TRIES and self.resampled < RESAMPLES_PER_DRAFT:
                    with self.run.timings.models():
                        problem = await run_model(
                            choice.sentence_problem, self.run.deps.embed, sentence.text, sentence.logprob,
                            self.references,
                        )  # fmt: skip
                    if problem is not None:
                        tries += 1
                        self.resampled += 1
                        await stream.aclose()
                        stream = go_on.stream(self.run, self.text, self.resampled)
                        continue
                tries = 0
                checked = await gate.check(sentence.text)
                if checked is None:
                    continue
                piece = Sentence(checked, sentence.separator).joined_to(self.text)
                delta = "\n\n" + piece if not self.text and gate.shown else piece
                self.text += piece
                gate.shown_as(delta)
                if sentence.logprob is not None:
                    self.run.logprobs.append(sentence.logprob)
                yield Shown(piece, delta)
        finally:  # left early (the reader went away): the runtime stops writing now, not when collected
            await stream.aclose()


async def _filled(streams: list[SentenceStream], n: int, grace: float | None) -> list[int]:
    """Fill each stream to `n` sentences; the indices of those that got there (all, without `grace`)."""
    if grace is None:
        await asyncio.gather(*(s.fill(n) for s in streams))
        return list(range(len(streams)))
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    tasks = {asyncio.ensure_future(s.fill(n)): k for k, s in enumerate(streams)}
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if pending:
            more, pending = await asyncio.wait(pending, timeout=grace * (loop.time() - t0))
            done |= more
    finally:  # past the grace, or the reader went away: no candidate reads on
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    errors = [e for e in (t.exception() for t in done) if e is not None]  # every one read, none left unseen
    if errors:
        raise errors[0]  # a stream's error surfaces as it would without the grace
    return sorted(tasks[t] for t in done)


@dataclass
class _Resampler:
    """How a draft writes a rejected sentence again: the chosen candidate's settings, another seed,
    from the prompt `resume` builds for what is shown so far."""

    params: SamplingParams
    processors: Sequence[LogitsProcessor]
    kv_key: str | None
    resume: Resume

    def stream(self, run: StoryRun, text_so_far: str, attempt: int) -> SentenceStream:
        gen = run.deps.generator
        prompt, opening = self.resume()
        p = self.params.model_copy(
            update={
                "seed": None if self.params.seed is None else self.params.seed + 104729 * attempt,
                "max_tokens": max(16, self.params.max_tokens - gen.count_tokens(text_so_far)),
            }
        )
        return SentenceStream(gen.stream(prompt, p, kv_key=self.kv_key, processors=self.processors), opening)


class _Checked(BaseModel):
    character_consistency: float
    states: dict[str, str]


async def scene_events(run: StoryRun, plan: StoryPlan, i: int, drift: str | None = None) -> AsyncIterator[Event]:
    """Write scene `i` of `plan`: its `text` events as sentences are shown, then its `checkpoint`
    (the SceneOutcome)."""
    request, deps, sp = run.request, run.deps, plan.scenes[i]
    gen = deps.generator
    count = gen.count_tokens
    guide = emotion_agent.guidance(sp.target, request.sampling.temperature)
    max_tokens = token_allowance(sp.words)
    facts, states = [drift] if drift else [], []
    if deps.remember and run.memory.facts:  # what earlier scenes established that bears on this one, and on its outline
        planned = sp.outline.line() if sp.outline is not None else ""
        query = f"{sp.goal}. {planned} {sp.pov or ''}. {run.shown[-600:]}"
        with run.timings.models():
            facts += [f.text for f in await run_model(run.memory.relevant, query, 8, FACT_TOKENS, count)]
        states = run.memory.character_states()
    style = gen.info.prompt_style
    owed = adherence.missing_words(run.shown, request.premise)

    def messages_for(scene: ScenePlan, going_on: bool, max_tokens: int) -> Prompt:
        return scene_messages(
            style, request, run.profile, plan, run.cast, scene, guide, run.shown,
            facts=facts, states=states, owed=owed, going_on=going_on,
            budget=prompt_budget(gen, max_tokens), count=count,
        )  # fmt: skip

    n = max(1, deps.candidates)
    # the adapter's context sentence by sentence, from the previous scene's target to this one's
    schedule = emotion_agent.sentence_contexts(
        gen.emotion_context(plan.scenes[i - 1].target.emotion) if i else None,
        gen.emotion_context(sp.target.emotion),
        sp.words,
    )
    params = [
        SamplingParams(
            max_tokens=max_tokens,
            temperature=guide.temperature,
            top_p=request.sampling.top_p,
            repetition_penalty=request.sampling.repetition_penalty,
            seed=run.seed * 1009 + i * 31 + k,
            # the adapter on every other candidate: measured alone it steers, on top of
            # logit steering it did not help (docs/benchmarks.md), so the reranker decides
            emotion_schedule=schedule if k % 2 else None,
        )
        for k in range(n)
    ]
    processors = [steering_bias(run, sp.target, emotion_agent.steering_strength(k, n)) for k in range(n)]

    gate = await run.gate()
    report = gate.start_scene(i)
    planned = f"{sp.goal}. {sp.outline.event if sp.outline is not None else ''}"
    draft = Draft(run, sp.target, [request.premise, planned], words=sp.words)
    continues = style == "continuation"
    opening = opening_words(sp, plan, run.cast, request.premise, owed) if continues else ""
    kv_key = f"story-{id(run)}-{i}" if continues else None  # resamples reuse the scene's prefix

    def resume() -> tuple[Prompt, str]:
        left = sp.model_copy(update={"words": max(1, sp.words - len(draft.text.split()))})
        begun = bool(draft.text)
        return messages_for(left, begun, max_tokens), "" if begun else opening

    write = draft.write(
        messages_for(sp, False, max_tokens), params, processors, kv_key,
        opening=opening, resume=resume if continues else None,
    )  # fmt: skip
    async with aclosing(write) as shown_sentences:
        async for shown in shown_sentences:
            yield Event("text", {"scene": i, "text": shown.delta})
    # the model stopped early, or the gate dropped most of what it wrote (talk about its task,
    # fragments; 9 of the consistency benchmark's 409 scenes came out empty): the chosen
    # candidate's settings go on from what was shown
    for extra in range(1, TOP_UPS + 1):
        if len(draft.text.split()) >= SHORT_SCENE * sp.words:
            break
        missing = sp.words - len(draft.text.split())
        p = params[draft.chosen].model_copy(
            update={"seed": params[draft.chosen].seed + 7919 * extra, "max_tokens": token_allowance(missing)}
        )
        more = messages_for(sp.model_copy(update={"words": missing}), bool(draft.text), p.max_tokens)
        write = draft.write(
            more, [p], [processors[draft.chosen]], kv_key,
            opening="" if draft.text else opening, resume=resume if continues else None,
        )  # fmt: skip
        async with aclosing(write) as shown_sentences:
            async for shown in shown_sentences:
                yield Event("text", {"scene": i, "text": shown.delta})
    run.resampled += draft.resampled
    yield Event("checkpoint", await _outcome(run, i, sp, draft.text, report))


async def _outcome(run: StoryRun, i: int, sp, text: str, report) -> SceneOutcome:
    """The finished scene measured, checked by the technical and character agents and remembered."""
    deps = run.deps
    m = await measure(run, text or ".")
    checker = await run.checker()

    async def technical():
        return await run_agent_work(technical_agent.check_text, text, run.request.audience, sp.words)

    async def character():
        """Consistency of the text as written (before the gate's repairs); states and facts from the final text."""
        as_written = await run_agent_work(checker.check, " ".join(report.raw))
        final = await run_agent_work(checker.check, text)
        checker.learn(final)
        states = await run_model(character_agent.scene_states, final, deps.emotion.score_passages)
        return _Checked(character_consistency=as_written.character_consistency, states=states)

    async def remember():
        with run.timings.models():
            await remember_scene(run.memory, text, i, deps.generator, run.seed + i)

    results = await run_parallel(
        {
            "technical": (technical, deps.agent_timeout_s),
            "character": (character, deps.agent_timeout_s),
            **({"memory": (remember, deps.agent_timeout_s)} if deps.remember and text else {}),
        }
    )
    reasons = [f"scene {i + 1}: {r}" for r in report.reasons]
    character_consistency, states = 1.0, {}
    if results["character"].ok:
        character_consistency = results["character"].output.character_consistency
        states = results["character"].output.states
    if results["technical"].ok:
        reasons += [f"scene {i + 1}: {issue}" for issue in results["technical"].output.issues]
    scene = Scene(index=i, text=text, target=sp.target, measured=m, outline=sp.outline)
    return SceneOutcome(
        scene=scene,
        distance=emotion_agent.distance(m, sp.target),
        character_consistency=character_consistency,
        cultural_fit=report.cultural_fit,
        reasons=reasons,
        degraded=[name for name, r in results.items() if not r.ok],
        states=states,
        contradictions_found=sum(r.startswith("memory:") for r in report.reasons),
    )
