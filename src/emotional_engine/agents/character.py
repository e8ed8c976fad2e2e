"""Character agent: the cast, and whether the written text keeps to it.

The cast is the caller's, completed, or built from the premise and the culture: a person named in
the premise becomes the protagonist (pronouns from the premise's words: "daughter", "his"); the
other roles get names from the culture's generator, two traits each, a goal (the protagonist's is
the premise; the rival's comes from the culture's conflict sources) and a relationship graph
(protagonist - ally: friends; protagonist - rival: rivals).

Checking uses `agents.character_check` (the rule-based reader of mentions, pronouns, the dead,
traits and kinship); the repairs run per sentence in the gate before text is shown
(`agents/sentence_checks.CharacterCheck`): stray names and wrong pronouns are substituted; a
sentence where the dead act or a trait or fact is contradicted is rewritten by the model, or
dropped. The checker's facts (deaths, kinship) carry from scene to scene. Each character's
emotional state per scene is the emotion model's reading of the sentences that mention them.
character_consistency is the share of mentions (names, aliases, forms of address, resolved pronouns,
stray names) that agree with the sheet and with earlier facts, before repair.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from emotional_engine.agents.character_check import ANTONYMS, CharacterChecker, CheckResult, Finding, StoryFacts
from emotional_engine.culture import CultureProfile, NameGenerator
from emotional_engine.culture.lexicon import all_person_names, is_ordinary
from emotional_engine.domain import Character, StoryRequest

PRONOUNS = {"female": "she/her", "male": "he/him"}
ROLES = ("protagonist", "ally", "rival")
TRAITS = (
    "curious",
    "stubborn",
    "kind",
    "proud",
    "patient",
    "restless",
    "loyal",
    "cautious",
    "generous",
    "quick-tempered",
    "honest",
    "secretive",
    "brave",
    "shy",
    "practical",
    "dreamy",
)
_FEMALE = re.compile(r"\b(?:she|her|hers|woman|girl|daughter|mother|sister|wife|grandmother|aunt|widow|queen)\b", re.I)
_MALE = re.compile(r"\b(?:he|him|his|man|boy|son|father|brother|husband|grandfather|uncle|widower|king)\b", re.I)


class CharacterReport(BaseModel):
    findings: list[Finding] = Field(default_factory=list)
    mentions: dict[str, int] = Field(description="cast member -> times mentioned")
    unknown_names: list[str]
    character_consistency: float = Field(ge=0.0, le=1.0)
    reasons: list[str]


def premise_gender(premise: str) -> str | None:
    """The protagonist's gender from the premise's first gendered word ("A blind potter and her grandfather")."""
    f, m = _FEMALE.search(premise), _MALE.search(premise)
    if f and (not m or f.start() < m.start()):
        return "female"
    return "male" if m else None


def premise_people(premise: str) -> list[str]:
    """Person names in the premise: known names, and unknown capitalised words in apposition ("Funmilayo, a
    fisherman's daughter") or after "named"; never after a preposition of place ("a night market in Victoria")."""
    places = set(re.findall(r"\b(?:in|to|from|at|near|of|across|around)\s+([A-Z][\w’'-]+)", premise))
    introduced = set(re.findall(r"\b([A-Z][\w’'-]+),\s+(?:a|an|the)\b", premise))
    introduced |= set(re.findall(r"\b(?:named|called)\s+([A-Z][\w’'-]+)", premise))
    words = re.findall(r"\b[A-Z][\w’'-]+\b", premise)
    return [
        w
        for w in dict.fromkeys(words)
        if w not in places and not is_ordinary(w, inflected=False) and (w in all_person_names() or w in introduced)
    ]


def premise_traits(premise: str) -> list[str]:
    """Traits the checker knows that the premise gives ("A blind potter")."""
    return [t for t in ANTONYMS if re.search(rf"\b{re.escape(t)}\b", premise, re.IGNORECASE)]


def build_cast(request: StoryRequest, profile: CultureProfile, size: int = 3) -> list[Character]:
    """The caller's cast first; a person the premise names next; generated members fill the other roles."""
    cast = [
        Character(
            name=m.name,
            role=m.role,
            pronouns=m.pronouns,
            traits=m.traits,
            goals=m.goals,
            aliases=m.aliases,
            relationships=m.relationships,
        )
        for m in request.cast
    ]
    gen = NameGenerator(profile, seed=request.seed or 0)
    rng = random.Random(request.seed or 0)
    gender = premise_gender(request.premise)
    taken = {w for c in cast for w in c.name.split()}
    for name in premise_people(request.premise):
        if len(cast) < size and name not in taken:
            cast.append(
                Character(
                    name=name,
                    role=ROLES[len(cast)],
                    traits=rng.sample(TRAITS, 2),
                    pronouns=PRONOUNS[gender] if gender else "they/them",
                )
            )
    for role in ROLES[len(cast) : size]:
        p = gen.person(gender if role == "protagonist" and gender else None)
        cast.append(Character(name=p.full, role=role, pronouns=PRONOUNS[p.gender], traits=rng.sample(TRAITS, 2)))
    hero = next((c for c in cast if c.role == "protagonist"), cast[0])
    if not request.cast:  # the premise describes the protagonist the engine chose
        hero.traits = list(dict.fromkeys([*premise_traits(request.premise), *hero.traits]))[:4]
    _fill_goals_and_relationships(cast, request.premise, profile, rng)
    return cast


def _fill_goals_and_relationships(
    cast: list[Character], premise: str, profile: CultureProfile, rng: random.Random
) -> None:
    hero = next((c for c in cast if c.role == "protagonist"), cast[0])
    first = hero.name.split()[0]
    for c in cast:
        if c is hero:
            c.goals = c.goals or [premise]
            continue
        if c.role == "rival":
            c.goals = c.goals or [f"to win out over {first} in {rng.choice(profile.story.conflict_sources)}"]
            link = "rival"
        else:
            c.goals = c.goals or [f"to stand by {first}"]
            link = "friend"
        c.relationships.setdefault(hero.name, link)
        hero.relationships.setdefault(c.name, link)


def checker_for(
    cast: list[Character], profile: CultureProfile | None = None, facts: StoryFacts | None = None
) -> CharacterChecker:
    return CharacterChecker(cast, profile, facts)


def _report(result: CheckResult) -> CharacterReport:
    reasons = [f"{f.kind.replace('_', ' ')}: {f.reason} in {f.sentence!r}" for f in result.findings]
    return CharacterReport(
        findings=result.findings,
        mentions=result.mentions,
        unknown_names=sorted({f.span for f in result.findings if f.kind == "foreign_name"}),
        character_consistency=result.character_consistency,
        reasons=reasons,
    )


def check_mentions(
    text: str, cast: list[Character], profile: CultureProfile | None = None, facts: StoryFacts | None = None
) -> CharacterReport:
    """Check without repairing."""
    return _report(checker_for(cast, profile, facts).check(text))


def scene_states(result: CheckResult, score_passages: Callable[[list[str]], list[Any]]) -> dict[str, str]:
    """Each mentioned character's emotion in this scene: the emotion model on the sentences that mention them."""
    names = [n for n, idx in result.sentences_of.items() if idx]
    if not names:
        return {}
    passages = [" ".join(result.sentences[i] for i in result.sentences_of[n]) for n in names]
    return {n: m.emotion for n, m in zip(names, score_passages(passages))}
