"""The decision rule from the head's 15 class probabilities to (category, severity); no model needed."""

import numpy as np
import pytest

from emotional_engine.safety.labels import CATEGORIES, CLASSES
from emotional_engine.safety.model import decide


def probs(**mass) -> np.ndarray:
    q = np.zeros(len(CLASSES))
    for k, v in mass.items():
        q[CLASSES.index(k if k == "safe" else ":".join(k.rsplit("_", 1)))] = v  # violence_2 -> violence:2
    assert q.sum() == pytest.approx(1.0)
    return q


def test_safe_when_safe_holds_the_threshold():
    p = decide(probs(safe=0.55, gore_2=0.45))
    assert (p.category, p.severity) == ("safe", 0) and p.probability == pytest.approx(0.55)


def test_category_sums_its_severities_and_severity_is_the_larger():
    # violence's 0.2 + 0.25 beats gore's 0.3 although gore:2 is the largest single class
    p = decide(probs(safe=0.25, violence_1=0.2, violence_2=0.25, gore_2=0.3))
    assert (p.category, p.severity) == ("violence", 2)
    assert p.probability == pytest.approx(0.45)
    assert p.scores["gore"] == pytest.approx(0.3) and set(p.scores) == set(CATEGORIES)


def test_threshold_moves_the_line():
    q = probs(safe=0.4, substances_1=0.6)
    assert decide(q, 0.5).category == "substances"
    assert decide(q, 0.3).category == "safe"
