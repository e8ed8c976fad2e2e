"""Choosing candidates on the whole picture, and writing rejected sentences again (agents/choice.py,
agents/scene_writer.Draft), with fake models."""

import numpy as np
import pytest

from emotional_engine.agents import choice
from emotional_engine.agents.run import Deps, StoryRun
from emotional_engine.agents.scene_writer import RESAMPLES_PER_DRAFT, Draft
from emotional_engine.domain import SceneTarget, StoryRequest
from emotional_engine.lm.sampling import SamplingParams
from fakes import FakeEmotion, FakeGenerator, ModelInfo, bow_embed

PREMISE = "A lighthouse keeper finds a letter from her lost brother."
ON = "The lighthouse keeper found the letter from her brother in fear. Her brother had been lost at sea for years."
OFF = "Everyone at the fair felt joy. The dancers laughed with joy under the bright lanterns."
JOY = SceneTarget(valence=0.8, emotion="joy")


def test_the_cheapest_candidate_weighs_emotion_adherence_fluency_and_talk():
    near_but_off = choice.Candidate(distance=0.1, adherence=0.1, fluency=-2.0, meta=0.0)
    further_but_on = choice.Candidate(distance=0.6, adherence=0.7, fluency=-2.0, meta=0.0)
    talking = choice.Candidate(distance=0.0, adherence=0.9, fluency=-1.5, meta=1.0)
    assert choice.choose([near_but_off, further_but_on]) == 1
    assert choice.choose([near_but_off, further_but_on], choice.Weights(1.0, 0.0, 0.0, 0.0)) == 0  # emotion alone
    assert choice.choose([talking, further_but_on]) == 1
    fluent = choice.Weights(emotion=1.0, adherence=1.0, fluency=0.5, meta=2.0)  # the tuned weights leave it at 0
    garbled = choice.Candidate(distance=0.6, adherence=0.7, fluency=-4.5, meta=0.0)
    assert choice.choose([garbled, further_but_on], fluent) == 1
    unknown = choice.Candidate(distance=0.6, adherence=0.7, fluency=None, meta=0.0)  # a backend without logprobs
    assert choice.cost(unknown, fluent) == pytest.approx(choice.cost(further_but_on, fluent) - 0.5 * 2.0)


def test_sentence_problems_on_planted_sentences():
    refs = [PREMISE, "The keeper opens the letter."]
    problem = lambda s, lp=-1.5: choice.sentence_problem(bow_embed, s, lp, refs)  # noqa: E731
    assert problem("Here is a rewritten version of the scene with more tension.") == "meta"
    assert problem("Premise: the keeper finds a letter.") == "meta"
    assert problem("Fighting.") == "fragment" and problem("Georgia.") == "fragment"
    assert problem('"Go."') is None  # dialogue may be short
    assert problem("The keeper climbed the stairs to the lamp.", lp=-4.0) == "fluency"
    assert problem("The keeper climbed the stairs to the lamp.", lp=None) is None  # no log-probabilities known
    # embedders that find the sentences unlike the references (which are the texts about the keeper), or alike
    apart = lambda texts: np.eye(2)[[int("keeper" in t.lower()) for t in texts]]  # noqa: E731
    near = lambda texts: np.ones((len(texts), 2)) / np.sqrt(2)  # noqa: E731
    trump = "President Trump announced new tariffs on steel imports."  # in a story of a lighthouse keeper
    assert choice.sentence_problem(apart, trump, -1.5, refs) == "off topic"
    assert choice.sentence_problem(near, "She climbed up to the lamp room and sat down.", -1.5, refs) is None
    assert choice.sentence_problem(apart, "Her letter lay open.", -1.5, refs) is None  # unlike, but shares a word
    assert problem("The keeper climbed the stairs to the lamp.") is None


def run_with(gen):
    deps = Deps(generator=gen, emotion=FakeEmotion(cues={"joy": ("joy", 0.8), "fear": ("fear", -0.6)}), embed=bow_embed)
    return StoryRun.start(StoryRequest(premise=PREMISE, seed=1), deps, 1)


async def shown(draft, gen, n, **kw):
    params = [SamplingParams(max_tokens=200, seed=k) for k in range(n)]
    return [s.piece async for s in draft.write([{"role": "user", "content": "x"}], params, [[]] * n, **kw)]


async def test_an_off_premise_candidate_nearest_the_emotion_loses_to_one_on_the_premise(monkeypatch):
    # the fake emotion model reads all or nothing (the on-premise candidate misses the target by 1.7 of
    # 2): weights that let adherence count against that
    monkeypatch.setattr(choice, "WEIGHTS", choice.Weights(emotion=1.0, adherence=3.0, fluency=0.0, meta=2.0))
    gen = FakeGenerator(write=lambda call: OFF if call.params.seed == 0 else ON, chunk=9)
    draft = Draft(run_with(gen), JOY, [PREMISE])
    text = "".join(await shown(draft, gen, 2))
    assert draft.chosen == 1 and text == ON and len(gen.streams) == 2


async def test_with_emotion_alone_the_nearest_wins(monkeypatch):
    monkeypatch.setattr(choice, "WEIGHTS", choice.Weights(1.0, 0.0, 0.0, 0.0))
    gen = FakeGenerator(write=lambda call: OFF if call.params.seed == 0 else ON, chunk=9)
    draft = Draft(run_with(gen), JOY, [PREMISE])
    await shown(draft, gen, 2)
    assert draft.chosen == 0


def continuing(write, **kw):
    return FakeGenerator(write=write, chunk=6, info=ModelInfo("fake", "fake", prompt_style="continuation"), **kw)


async def test_a_rejected_sentence_is_written_again_from_the_same_prefix():
    good = "The keeper read her brother's letter twice. "
    gen = continuing(lambda call: good + "Fighting. Lost." if call.index == 0 else "The lamp turned above her letter.")
    draft = Draft(run_with(gen), JOY, [PREMISE])
    resumed = []

    def resume():
        resumed.append(draft.text)
        return [{"role": "user", "content": "x"}, {"role": "assistant", "content": draft.text}], ""

    text = "".join(await shown(draft, gen, 1, kv_key="k", resume=resume))
    assert text == good + "The lamp turned above her letter."  # the fragment never reached the reader
    assert draft.resampled == 1 and resumed == [good.strip()]
    again = gen.streams[1]
    assert again.prompt[-1] == {"role": "assistant", "content": good.strip()} and again.kv_key == "k"
    assert again.params.seed != gen.streams[0].params.seed


async def test_resampling_is_bounded_per_sentence_and_per_draft():
    talk = "Here is a rewritten version of the scene. " * 3
    gen = continuing(lambda call: talk + "The keeper lit the lamp. " + talk)
    draft = Draft(run_with(gen), JOY, [PREMISE])

    def resume():
        return [{"role": "assistant", "content": draft.text}], ""

    await shown(draft, gen, 1, resume=resume)
    assert draft.resampled == RESAMPLES_PER_DRAFT and len(gen.streams) == 1 + RESAMPLES_PER_DRAFT
    # each rejected sentence is tried SENTENCE_TRIES times, then the next one goes on to the gate
    assert draft.text.count("The keeper lit the lamp.") <= 1


async def test_good_sentences_are_not_written_again_and_fluency_counts():
    gen = continuing(ON, logprob=lambda piece: -1.0)
    draft = Draft(run_with(gen), JOY, [PREMISE])
    await shown(draft, gen, 1, resume=lambda: ([], ""))
    assert draft.resampled == 0 and len(gen.streams) == 1 and draft.run.logprobs == [-1.0, -1.0]
    garbled = continuing(ON, logprob=lambda piece: -5.0)
    draft = Draft(run_with(garbled), JOY, [PREMISE])
    await shown(draft, garbled, 1, resume=lambda: ([], ""))
    assert draft.resampled == RESAMPLES_PER_DRAFT  # the model found every sentence unlikely: bounded all the same
