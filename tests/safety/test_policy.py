"""The per-audience policy table (policy.yaml) and the label checks; no model needed."""

import pytest

from emotional_engine.safety import AUDIENCES, UNSAFE, action_for, load_policy
from emotional_engine.safety.labels import CLASSES, class_of


@pytest.mark.parametrize(
    "category,severity,expected",
    [
        ("violence", 1, "allow"),  # mild peril stays in children's stories
        ("violence", 2, "block"),
        *[(c, s, "block") for c in ("gore", "sexual", "self_harm", "substances", "profanity", "hate") for s in (1, 2)],
    ],
)
def test_children(category, severity, expected):
    assert action_for(category, severity, "children") == expected


@pytest.mark.parametrize(
    "category,severity,expected",
    [
        ("violence", 1, "allow"),
        ("violence", 2, "flag"),
        ("gore", 1, "allow"),
        ("gore", 2, "block"),
        ("sexual", 1, "allow"),
        ("sexual", 2, "block"),
        ("self_harm", 1, "flag"),
        ("self_harm", 2, "block"),
        ("substances", 2, "flag"),
        ("profanity", 2, "flag"),
        ("hate", 1, "block"),
        ("hate", 2, "block"),
    ],
)
def test_teen(category, severity, expected):
    assert action_for(category, severity, "teen") == expected


def test_adult_blocks_only_strong_hate_and_flags_every_strong_category():
    for c in UNSAFE:
        for s in (1, 2):
            assert (action_for(c, s, "adult") == "block") == (c == "hate" and s == 2)
        assert action_for(c, 2, "adult") in ("flag", "block")
    assert action_for("hate", 1, "adult") == "flag"  # a character's prejudice, reported


def test_younger_audiences_are_never_more_permissive():
    rank = {"allow": 0, "flag": 1, "block": 2}
    for c in UNSAFE:
        for s in (1, 2):
            ranks = [rank[action_for(c, s, a)] for a in ("adult", "teen", "children")]
            assert ranks == sorted(ranks), (c, s, ranks)


def test_safe_is_always_allowed():
    assert all(action_for("safe", 0, a) == "allow" for a in AUDIENCES)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="unknown audience 'toddlers'"):
        action_for("violence", 1, "toddlers")
    with pytest.raises(ValueError, match="unknown safety category 'spoilers'"):
        action_for("spoilers", 1, "adult")
    with pytest.raises(ValueError, match="severity of gore must be 1"):
        class_of("gore", 3)
    with pytest.raises(ValueError, match="safe sentence has severity 0"):
        class_of("safe", 1)


def test_an_incomplete_policy_file_is_refused(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("children: {violence: {1: allow, 2: block}}\nteen: {}\nadult: {}\n")
    with pytest.raises(ValueError, match="children must list exactly"):
        load_policy(path)
    path.write_text("children: {}\n")
    with pytest.raises(ValueError, match="audiences must be exactly"):
        load_policy(path)


def test_head_classes_are_safe_then_each_category_at_two_severities():
    assert CLASSES[0] == "safe" and len(CLASSES) == 1 + 2 * len(UNSAFE)
    assert class_of("violence", 2) == "violence:2" and class_of("safe", 0) == "safe"
