"""Character agent: the cast, and whether the written text keeps to it.

The cast is the caller's, completed, or built from the premise and the culture: a person named in
the premise becomes the protagonist (pronouns from the premise's words: "daughter", "his"); the
other roles get names from the culture's generator, two traits each, a goal (the protagonist's is
the premise; the rival's comes from the culture's conflict sources) and a relationship graph
(protagonist - ally: friends; protagonist - rival: rivals).

Checking and repair use `agents.character_check` (the rule-based reader of mentions, pronouns, the
dead, traits and kinship): stray names and wrong pronouns are substituted; a sentence where the
dead act or a trait or fact is contradicted is regenerated through the Generator, or dropped
(`agents.rewrite`). The checker's facts (deaths, kinship) carry from scene to scene. Each
character's emotional state per scene is the emotion model's reading of the sentences that mention
them. character_consistency is the share of mentions (names, aliases, forms of address, resolved
pronouns, stray names) that agree with the sheet and with earlier facts, before repair.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from emotional_engine.agents.character_check import (
    ANTONYMS,
    Change,
    CharacterChecker,
    CheckResult,
    Finding,
    StoryFacts,
    all_person_names,
    is_ordinary,
    repair,
)
from emotional_engine.agents.rewrite import Rewrite, regenerate
from emotional_engine.culture import CultureProfile, NameGenerator
from emotional_engine.domain import Character, StoryRequest
from emotional_engine.emotion.model import split_sentences
from emotional_engine.lm.backends import Generator

PRONOUNS = {"female": "she/her", "male": "he/him"}
ROLES = ("protagonist", "ally", "rival")
TRAITS = ("curious", "stubborn", "kind", "proud", "patient", "restless", "loyal", "cautious", "generous",
          "quick-tempered", "honest", "secretive", "brave", "shy", "practical", "dreamy")
_FEMALE = re.compile(r"\b(?:she|her|hers|woman|girl|daughter|mother|sister|wife|grandmother|aunt|widow|queen)\b", re.I)
_MALE = re.compile(r"\b(?:he|him|his|man|boy|son|father|brother|husband|grandfather|uncle|widower|king)\b", re.I)


class CharacterReport(BaseModel):
    findings: list[Finding] = Field(default_factory=list)
    changes: list[Change] = Field(default_factory=list, description="names and pronouns substituted")
    rewrites: list[Rewrite] = Field(default_factory=list, description="sentences regenerated or dropped")
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
    return [w for w in dict.fromkeys(words) if w not in places and not is_ordinary(w, inflected=False)
            and (w in all_person_names() or w in introduced)]


def premise_traits(premise: str) -> list[str]:
    """Traits the checker knows that the premise gives ("A blind potter")."""
    return [t for t in ANTONYMS if re.search(rf"\b{re.escape(t)}\b", premise, re.IGNORECASE)]


def build_cast(request: StoryRequest, profile: CultureProfile, size: int = 3) -> list[Character]:
    """The caller's cast first; a person the premise names next; generated members fill the other roles."""
    cast = [Character(name=m.name, role=m.role, pronouns=m.pronouns, traits=m.traits, goals=m.goals,
                      aliases=m.aliases, relationships=m.relationships) for m in request.cast]
    gen = NameGenerator(profile, seed=request.seed or 0)
    rng = random.Random(request.seed or 0)
    gender = premise_gender(request.premise)
    taken = {w for c in cast for w in c.name.split()}
    for name in premise_people(request.premise):
        if len(cast) < size and name not in taken:
            cast.append(Character(name=name, role=ROLES[len(cast)], traits=rng.sample(TRAITS, 2),
                                  pronouns=PRONOUNS[gender] if gender else "they/them"))
    for role in ROLES[len(cast):size]:
        p = gen.person(gender if role == "protagonist" and gender else None)
        cast.append(Character(name=p.full, role=role, pronouns=PRONOUNS[p.gender], traits=rng.sample(TRAITS, 2)))
    hero = next((c for c in cast if c.role == "protagonist"), cast[0])
    if not request.cast:  # the premise describes the protagonist the engine chose
        hero.traits = list(dict.fromkeys([*premise_traits(request.premise), *hero.traits]))[:4]
    _fill_goals_and_relationships(cast, request.premise, profile, rng)
    return cast


def _fill_goals_and_relationships(cast: list[Character], premise: str, profile: CultureProfile,
                                  rng: random.Random) -> None:
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


def checker_for(cast: list[Character], profile: CultureProfile | None = None,
                facts: StoryFacts | None = None) -> CharacterChecker:
    return CharacterChecker(cast, profile, facts)


def _report(result: CheckResult, changes=(), rewrites=()) -> CharacterReport:
    reasons = [f"{f.kind.replace('_', ' ')}: {f.reason} in {f.sentence!r}" for f in result.findings]
    reasons += [f"replaced {c.old} with {c.new}" for c in changes]
    reasons += [f"{'rewrote' if r.new else 'dropped'} {r.old!r}" for r in rewrites]
    return CharacterReport(findings=result.findings, changes=list(changes), rewrites=list(rewrites),
                           mentions=result.mentions,
                           unknown_names=sorted({f.span for f in result.findings if f.kind == "foreign_name"}),
                           character_consistency=result.character_consistency, reasons=reasons)


def check_mentions(text: str, cast: list[Character], profile: CultureProfile | None = None,
                   facts: StoryFacts | None = None) -> CharacterReport:
    """Check without repairing."""
    return _report(checker_for(cast, profile, facts).check(text))


async def check_and_repair(text: str, checker: CharacterChecker, generator: Generator,
                           seed: int = 0) -> tuple[str, CharacterReport, CheckResult]:
    """Check, substitute names and pronouns, regenerate (or drop) sentences the dead act in or that
    contradict the sheet; the checker learns the repaired text's facts. Returns the text, the report
    (scored before repair) and the check of the repaired text (for per-character states)."""
    result = checker.check(text)
    fixed, changes, to_regenerate = repair(text, result.findings)
    facts_now = StoryFacts(dead=sorted(set(checker.facts.dead) | set(result.learned.dead)), kin=checker.facts.kin)
    sentence_checker = CharacterChecker(checker.cast, checker.profile, facts_now, checker.person_names)

    def still_bad(sentence: str, before: str) -> str | None:
        """The new sentence checked after the one before it, so its pronouns have someone to point to."""
        context = split_sentences(before)[-1:] if before else []
        found = [f for f in sentence_checker.check(" ".join([*context, sentence])).findings
                 if f.sentence_index == len(context)]
        return found[0].reason if found else None

    flagged = [(f.sentence, f"{f.kind.replace('_', ' ')}: {f.reason}") for f in to_regenerate]
    fixed, rewrites = await regenerate(fixed, flagged, generator, still_bad, seed=seed)
    final = checker.check(fixed)
    checker.learn(final)
    return fixed, _report(result, changes, rewrites), final


def scene_states(result: CheckResult, score_passages: Callable[[list[str]], list[Any]]) -> dict[str, str]:
    """Each mentioned character's emotion in this scene: the emotion model on the sentences that mention them."""
    names = [n for n, idx in result.sentences_of.items() if idx]
    if not names:
        return {}
    passages = [" ".join(result.sentences[i] for i in result.sentences_of[n]) for n in names]
    return {n: m.emotion for n, m in zip(names, score_passages(passages))}
