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


# ---- any input: an arc, or ValueError (the documented error; pydantic's ValidationError is one) ----

NEAR = st.floats(-1.5, 1.5)  # around the valid ranges
NEAR_POINTS = st.lists(st.tuples(NEAR, NEAR), max_size=21).map(sorted)  # often an arc, or nearly one
NUMBER = st.one_of(
    st.floats().map(repr),
    st.integers(-2, 2).map(str),
    st.sampled_from(["nan", "-inf", "1e-400", "1e400", "-0", "1_0", " 0.5 ", "", "0x1", "½", "١"]),
)
POINTS_SPEC = (
    NEAR_POINTS.map(lambda ps: [(repr(t), repr(v)) for t, v in ps]) | st.lists(st.tuples(NUMBER, NUMBER), max_size=22)
).map(lambda ps: ";".join(map(",".join, ps)))
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=12,
)


def _is_valid(arc: Arc) -> bool:
    ts = [t for t, _ in arc.points]
    return (
        2 <= len(arc.points) <= 20
        and all(0.0 <= t <= 1.0 and -1.0 <= v <= 1.0 for t, v in arc.points)
        and all(a < b for a, b in zip(ts, ts[1:]))
        and all(-1.0 <= v <= 1.0 for v in arc.targets(7))
    )


@given(POINTS_SPEC | st.text())
def test_any_points_text_parses_to_a_valid_arc_or_raises_value_error(spec):
    try:
        arc = parse_arc_points(spec)
    except ValueError as e:
        assert str(e)
        return
    assert _is_valid(arc)


@given(st.lists(st.tuples(st.floats(0, 1), st.floats(-1, 1)), min_size=2, max_size=20, unique_by=lambda p: p[0]))
def test_valid_points_written_as_text_parse_back(points):
    points = sorted(points)
    arc = parse_arc_points(";".join(f"{t!r},{v!r}" for t, v in points))
    assert arc.points == points and _is_valid(arc)


@given(NEAR_POINTS | JSON)
def test_any_json_as_points_is_a_valid_arc_or_a_validation_error(points):
    try:
        arc = Arc(points=points)
    except ValidationError:
        return
    assert _is_valid(arc)


@given(st.text() | st.sampled_from(list(NAMED_ARCS)).map(lambda n: f" {n.upper().replace('_', '-')} "))
def test_any_name_is_a_named_arc_or_raises_value_error_naming_some(name):
    try:
        arc = get_arc(name)
    except ValueError as e:
        assert any(n in str(e) for n in NAMED_ARCS)
        return
    assert arc.name in NAMED_ARCS and arc.points == list(NAMED_ARCS[arc.name])
