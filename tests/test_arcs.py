"""Arc shapes (Reagan et al. 2016) and custom curves."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from emotional_engine.arcs import NAMED_ARCS, Arc, get_arc, parse_arc_points


def _turns(values: list[float]) -> list[str]:
    """The sequence of rises and falls, merging runs: e.g. ['down', 'up']."""
    moves = ["up" if b > a else "down" for a, b in zip(values, values[1:]) if b != a]
    return [m for i, m in enumerate(moves) if i == 0 or m != moves[i - 1]]


@pytest.mark.parametrize(
    "name, shape",
    [
        ("rags_to_riches", ["up"]),
        ("tragedy", ["down"]),
        ("man_in_a_hole", ["down", "up"]),
        ("icarus", ["up", "down"]),
        ("cinderella", ["up", "down", "up"]),
        ("oedipus", ["down", "up", "down"]),
    ],
)
def test_named_arcs_have_the_papers_shapes(name, shape):
    assert _turns(get_arc(name).targets(40)) == shape


def test_targets_sample_scene_midpoints():
    arc = Arc(points=[(0.0, -1.0), (1.0, 1.0)])
    assert arc.targets(4) == [-0.75, -0.25, 0.25, 0.75]
    assert arc.targets(1) == [0.0]
    with pytest.raises(ValueError):
        arc.targets(0)


def test_unknown_arc_suggests_the_closest_names():
    with pytest.raises(ValueError, match="man_in_a_hole"):
        get_arc("man in hole")
    assert get_arc("Man-In-A-Hole").name == "man_in_a_hole"


def test_custom_points_parse_and_validate():
    arc = parse_arc_points("0,-0.5; 0.5,0.8; 1,0")
    assert arc.points == [(0.0, -0.5), (0.5, 0.8), (1.0, 0.0)]
    assert arc.valence(0.25) == pytest.approx(0.15)
    for bad, msg in [
        ("0,0", "at least 2"),
        ("0,0;0,1", "strictly increasing"),
        ("0,0;1,2", "outside"),
        ("0,0;1.5,0", "outside"),
        ("0,a;1,0", "not numbers"),
        ("0,0,1;1,0", "two numbers"),
    ]:
        with pytest.raises((ValueError, ValidationError), match=msg):
            parse_arc_points(bad)
    with pytest.raises(ValidationError):
        Arc(points=[(i / 21, 0.0) for i in range(21)])  # more than 20 points


@given(st.lists(st.floats(-1, 1), min_size=2, max_size=20), st.integers(1, 50))
def test_targets_stay_within_the_points_range(vs, n):
    arc = Arc(points=[(i / (len(vs) - 1), v) for i, v in enumerate(vs)])
    targets = np.array(arc.targets(n))
    assert len(targets) == n
    assert targets.min() >= min(vs) - 1e-4 and targets.max() <= max(vs) + 1e-4


def test_all_named_arcs_are_valid_arcs():
    for name, pts in NAMED_ARCS.items():
        assert Arc(name=name, points=list(pts)).points == list(pts)
