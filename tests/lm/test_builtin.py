"""BuiltinGenerator on the tiny model: the whole Generator protocol, constraints bound to its own
tokenizer, log-probabilities on the pieces."""

from __future__ import annotations

import math
import re

import pytest

from emotional_engine.lm.builtin import BuiltinGenerator
from emotional_engine.lm.constrained import Regex
from emotional_engine.lm.generator import Generator, ModelInfo
from emotional_engine.lm.sampling import SamplingParams

pytestmark = pytest.mark.usefixtures("torch_threads")

JOY = [1.0] + [0.0] * 8 + [0.8, 0.5]


@pytest.fixture
def gen(make_batcher):
    return BuiltinGenerator(make_batcher(), ModelInfo("builtin", "tiny"), {"joy": JOY})


def test_it_answers_the_whole_protocol(gen, tokenizer):
    assert isinstance(gen, Generator) and gen.supports_logits_processors
    assert gen.count_tokens("the cat sat on the mat") == len(tokenizer.encode("the cat sat on the mat"))
    vocab = gen.vocabulary()
    assert len(vocab) == tokenizer.vocab_size and vocab[5] == tokenizer.token_text(5)
    assert gen.emotion_context("joy") == JOY and gen.emotion_context("fear") is None
    assert BuiltinGenerator(gen.batcher, gen.info).emotion_context("joy") is None  # no adapter


async def test_a_regex_is_bound_to_its_own_tokenizer(gen):
    line = r"Scene 1 \| lead: (Amara|Chidi)\.\n"
    done = await gen.complete(
        "the cat", SamplingParams(temperature=1.0, seed=7, max_tokens=60), processors=[Regex(line)]
    )
    assert done.finish_reason == "stop" and re.fullmatch(line, done.text)


async def test_pieces_carry_the_logprob_of_their_token(gen):
    pieces = [p async for p in gen.stream("the cat", SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True))]
    tokens = [p for p in pieces if p.token_id is not None]
    assert tokens and all(p.logprob is not None and p.logprob <= 0.0 and math.isfinite(p.logprob) for p in tokens)
    assert pieces[-1].finish_reason == "length" and pieces[-1].logprob is None
