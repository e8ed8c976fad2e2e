"""Sensitivity and stereotype rules: data in the profiles and stereotypes.yaml, applied per audience."""

import pytest

from emotional_engine.culture import load_profile, profile_tags
from emotional_engine.culture.profiles import CultureProfile
from emotional_engine.culture.sensitivity import check, shared_checks


@pytest.mark.parametrize("tag", profile_tags())
def test_every_profile_has_checkable_rules(tag):
    checks = load_profile(tag).checks
    assert len(checks) >= 2 and all(c.reason for c in checks)
    assert any(c.kind == "stereotype" for c in checks) or any(c.kind == "sensitivity" for c in checks)


def test_a_bad_pattern_is_refused_with_its_reason():
    data = load_profile("sw-KE").model_dump()
    data["checks"] = [{"pattern": "(unclosed", "reason": "x x x"}]
    with pytest.raises(ValueError, match="not a regular expression"):
        CultureProfile.model_validate(data)


def test_shared_clichés_and_generalisations():
    assert len(shared_checks()) >= 10
    text = (
        "They walked through the exotic land. All Kenyans are lazy, he said. As every Japanese man does, he bowed. "
        "A horde of pigeons rose. All the children are asleep. The tribal council met at noon."
    )
    spans = [f.span for f in check(text, "en-GB")]
    assert spans == ["exotic land", "All Kenyans are lazy", "As every Japanese man does"]


def test_rules_apply_to_their_audience_and_younger():
    text = "Jack found his father's pistol in the drawer."
    assert check(text, "en-US", "adult") == [] and check(text, "en-US", "teen") == []
    [f] = check(text, "en-US", "children")
    assert f.kind == "sensitivity" and f.source == "en-US" and f.span == "pistol"
    assert check("Hakuna matata, he grinned.", "sw-KE", "children")[0].kind == "stereotype"  # adult rules too


def test_rules_are_the_culture_s_own():
    text = "Rahul served beef curry at the feast."
    assert check(text, "hi-IN")[0].reason.startswith("beef") and check(text, "en-GB") == []
