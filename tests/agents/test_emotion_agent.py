"""The emotional-intelligence agent's choices, on measured scores made by hand."""

from dataclasses import dataclass, field

import pytest

from emotional_engine.agents.emotional_intelligence import compensate, distance, guidance
from emotional_engine.domain import SceneTarget


@dataclass
class M:
    valence: float
    scores: dict = field(default_factory=dict)


def test_the_distance_is_zero_on_the_target_and_grows_with_valence_and_emotion_misses():
    target = SceneTarget(valence=-0.6, emotion="fear")
    near, off_emotion, far = M(-0.5, {"fear": 0.7}), M(-0.7, {"sadness": 0.9, "fear": 0.05}), M(0.5, {"joy": 0.8})
    assert distance(near, target) < distance(off_emotion, target) < distance(far, target)
    assert distance(M(-0.6, {"fear": 1.0}), target) == 0.0


def test_a_miss_is_compensated_in_the_next_scene():
    target, nxt = SceneTarget(valence=-0.8, emotion="sadness"), SceneTarget(valence=-0.2, emotion="sadness")
    pushed = compensate(nxt, target, measured_valence=-0.2)  # the scene came out 0.6 too bright
    assert pushed.valence == pytest.approx(-0.5)
    assert compensate(SceneTarget(valence=-0.9, emotion="fear"), target, 0.8).valence == -1.0  # clipped


def test_guidance_names_the_mood_and_warms_high_arousal():
    g = guidance(SceneTarget(valence=0.7, emotion="joy"), 0.8)
    assert "joyful" in g.note and "bright" in g.note and g.temperature == pytest.approx(0.9)
    assert guidance(SceneTarget(valence=-0.5, emotion="sadness"), 0.8).temperature == pytest.approx(0.8)


def test_sentence_contexts_move_from_the_previous_target_to_this_one():
    from emotional_engine.agents.emotional_intelligence import sentence_contexts

    start, end = [0.0] * 10 + [1.0], [1.0] * 10 + [0.0]
    steps = sentence_contexts(start, end, 60)  # about four sentences
    assert len(steps) == 4 and steps[-1] == end
    assert [s[0] for s in steps] == [0.25, 0.5, 0.75, 1.0] and [s[-1] for s in steps] == [0.75, 0.5, 0.25, 0.0]
    assert sentence_contexts(None, end, 60) == [end] * 4 and sentence_contexts(start, None, 60) is None
