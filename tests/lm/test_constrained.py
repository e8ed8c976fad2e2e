"""Constrained decoding: whatever the logits, the output is in the language."""

from __future__ import annotations

import re

import pytest
import torch

from emotional_engine.lm.constrained import RegexConstraint
from emotional_engine.lm.sampling import SamplingParams

pytestmark = pytest.mark.usefixtures("torch_threads")

LINE = r"Scene 1 \| place: [a-z][a-z ']{0,11} \| lead: (Amara|Chidi) \| event: [A-Z][A-Za-z ,']{3,30}\.\n"


@pytest.mark.parametrize("seed", range(20))
def test_random_logits_forced_through_the_constraint_always_parse(tokenizer, seed):
    g = torch.Generator().manual_seed(seed)
    constraint, ids = RegexConstraint(tokenizer, LINE), [1, 2, 3]  # a "prompt"
    for _ in range(200):
        logits = constraint(ids, 5 * torch.randn(tokenizer.vocab_size, generator=g))
        tok = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=g))
        if tok in tokenizer.eos_ids:
            break
        ids.append(tok)
    else:
        pytest.fail("the constraint never let the sequence end")
    assert re.fullmatch(LINE, tokenizer.decode(ids[3:]))


def test_the_batcher_writes_within_the_constraint(batcher, tokenizer):
    params = SamplingParams(temperature=1.0, seed=7, max_tokens=100)
    done = batcher.generate("the cat", params, processors=[RegexConstraint(tokenizer, LINE)])
    assert done.finish_reason == "stop" and re.fullmatch(LINE, done.text)


def test_a_bad_constraint_is_refused(tokenizer):
    with pytest.raises(ValueError):
        RegexConstraint(tokenizer, "(unclosed")
