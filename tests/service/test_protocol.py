"""The request bodies (service/protocol.py, and domain.StoryRequest behind POST /v1/stories and
/v1/jobs) under hypothesis: whatever JSON a model accepts comes back the same through model_dump and
model_validate (and through JSON text), and whatever it refuses is a pydantic ValidationError (the
service's 422), never another exception (which would be a 500)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from emotional_engine.arcs import NAMED_ARCS
from emotional_engine.culture_tags import profile_tags
from emotional_engine.domain import StoryRequest
from emotional_engine.service.protocol import ActionIn, AnalyzeIn, FeedbackIn, SessionCreate

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=10,
)
NEAR = st.floats(-1.05, 1.05)
# plausible values for each field: mostly valid, some across a limit
CAST_MEMBER = {
    "name": st.text(max_size=81),
    "role": st.text(max_size=81),
    "pronouns": st.text(max_size=21),
    "traits": st.lists(st.text(max_size=10), max_size=13),
    "goals": st.lists(st.text(max_size=10), max_size=7),
    "aliases": st.lists(st.text(max_size=81), max_size=3),
    "relationships": st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3),
}
SAMPLING = {
    "temperature": st.floats(-0.1, 2.1),
    "top_p": st.floats(-0.1, 1.1),
    "repetition_penalty": st.floats(0.9, 2.1),
}
STORY = {
    "premise": st.text(max_size=60),
    "arc": st.sampled_from([*NAMED_ARCS, "Man-In-A-Hole", "no_such_arc"])
    | st.lists(st.tuples(NEAR, NEAR).map(list), min_size=1, max_size=21, unique_by=lambda p: p[0]).map(sorted),
    "culture": st.sampled_from([*profile_tags(), "en_gb", " JA-jp ", "xx"]),
    "audience": st.sampled_from(["children", "teen", "adult", "kids"]),
    "words": st.integers(0, 21_000),
    "cast": st.lists(st.fixed_dictionaries({}, optional=CAST_MEMBER), max_size=4),
    "seed": st.none() | st.integers(-1, 2**32),
    "language": st.none() | st.text(max_size=8),
    "sampling": st.fixed_dictionaries({}, optional=SAMPLING),
    "model": st.none() | st.text(max_size=65),
}
# each model: its required fields, then plausible values for all its fields
MODELS = {
    StoryRequest: ({"premise"}, STORY),
    SessionCreate: ({"premise"}, {**STORY, "turns": st.none() | st.integers(1, 501)}),
    ActionIn: ({"action"}, {"action": st.text(max_size=2001)}),
    AnalyzeIn: ({"text"}, {"text": st.text(max_size=80), "windows": st.integers(0, 101)}),
    FeedbackIn: ({"rating"}, {"rating": st.integers(0, 6), "comment": st.none() | st.text(max_size=2001)}),
}


def bodies(required: set[str], fields: dict) -> st.SearchStrategy:
    """Plausible values; the same with any JSON in place of some; any JSON at all."""
    plausible = st.fixed_dictionaries(
        {k: v for k, v in fields.items() if k in required},
        optional={k: v for k, v in fields.items() if k not in required},
    )
    anything = st.fixed_dictionaries({}, optional={k: v | JSON for k, v in fields.items()} | {"unknown": JSON})
    return st.one_of(plausible, anything, JSON)


@pytest.mark.parametrize("model", list(MODELS), ids=lambda m: m.__name__)
def test_a_body_is_accepted_and_round_trips_or_is_a_validation_error(model: type[BaseModel]):
    outcomes = {"accepted": 0, "refused": 0}

    @given(data=bodies(*MODELS[model]))
    @hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    def check(data):
        try:
            m = model.model_validate(data)
        except ValidationError:  # anything else fails the test: the service would answer 500
            outcomes["refused"] += 1
            return
        outcomes["accepted"] += 1
        assert model.model_validate(m.model_dump(mode="json")) == m
        assert model.model_validate_json(m.model_dump_json()) == m
        assert model.model_validate_json(json.dumps(data)) == m  # as the service reads it: JSON text

    check()
    assert outcomes["accepted"] > 0 and outcomes["refused"] > 0, outcomes  # both sides were tried
