"""Sensitivity and stereotype checks: a rule checker for known patterns, not a model.

Two sources of rules, both data: `culture/stereotypes.yaml` (exoticising clichés and sweeping
generalisations about a people, out of place in any story) and the story culture's own `checks` in
its profile (its sensitivities per audience and the stereotypes its `avoid_stereotypes` list names,
written as patterns that can be found in text). A rule applies to its audience and the younger ones.
Each sentence is matched against each rule; a finding carries the sentence, the words matched and
the reason. What the rules do not name, the checker does not see: a sentence can be hurtful in
words no pattern lists, and a listed word can be used with care. Repair (regenerating the sentence)
is the cultural agent's.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, TypeAdapter

from emotional_engine.culture.profiles import Audience, SensitivityCheck, load_profile
from emotional_engine.text import split_sentences

_AGES: list[Audience] = ["children", "teen", "adult"]


class SensitivityFinding(BaseModel):
    kind: Literal["sensitivity", "stereotype"]
    sentence: str
    sentence_index: int
    span: str
    reason: str
    source: str  # the culture tag whose profile holds the rule, or "shared"


@cache
def shared_checks() -> tuple[SensitivityCheck, ...]:
    text = resources.files("emotional_engine.culture").joinpath("stereotypes.yaml").read_text(encoding="utf-8")
    return tuple(TypeAdapter(list[SensitivityCheck]).validate_python(yaml.safe_load(text)["checks"]))


@cache
def _rules(culture: str, audience: Audience) -> tuple[tuple[re.Pattern, SensitivityCheck, str], ...]:
    profile = load_profile(culture)
    rules = [(c, "shared") for c in shared_checks()] + [(c, profile.tag) for c in profile.checks]
    applies = [(c, src) for c, src in rules if _AGES.index(audience) <= _AGES.index(c.audience)]
    return tuple((re.compile(c.pattern, re.IGNORECASE), c, src) for c, src in applies)


def check_sentence(
    sentence: str, culture: str, audience: Audience = "adult"
) -> list[tuple[str, SensitivityCheck, str]]:
    """(matched words, rule, source) for every rule the sentence breaks."""
    out = []
    for rx, rule, src in _rules(culture, audience):
        m = rx.search(sentence)
        if m:
            out.append((m.group(), rule, src))
    return out


def check(text: str, culture: str, audience: Audience = "adult") -> list[SensitivityFinding]:
    """Every sentence of `text` against the shared rules and the culture's rules for this audience."""
    findings = []
    sentences = [p.strip() for p in split_sentences(text, normalize=False) if p.strip()]
    for i, sentence in enumerate(sentences):
        for span, rule, src in check_sentence(sentence, culture, audience):
            findings.append(
                SensitivityFinding(
                    kind=rule.kind, sentence=sentence, sentence_index=i, span=span, reason=rule.reason, source=src
                )
            )
    return findings
