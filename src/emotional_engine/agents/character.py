"""Character agent, first version: the cast, and who the text mentions.

The cast is the caller's, completed, or built from the culture's names: a protagonist, an ally
and a rival, with pronouns from the name's gender. In the written text the agent counts mentions
of cast members and flags name-like words that belong to nobody in the cast (a new character the
model invented); consistency is the share of person-name mentions that are cast members. Pronoun,
trait and fact checks come with the character issue.
"""

from __future__ import annotations

import random

from pydantic import BaseModel, Field

from emotional_engine.agents.cultural import name_index, name_like_words
from emotional_engine.culture import CultureProfile, NameGenerator
from emotional_engine.domain import Character, StoryRequest

PRONOUNS = {"female": "she/her", "male": "he/him"}
ROLES = ("protagonist", "ally", "rival")
TRAITS = ("curious", "stubborn", "kind", "proud", "patient", "restless", "loyal", "cautious", "generous",
          "quick-tempered", "honest", "secretive", "brave", "shy", "practical", "dreamy")


class CharacterReport(BaseModel):
    mentions: dict[str, int] = Field(description="cast member -> times named")
    unknown_names: list[str]
    character_consistency: float = Field(ge=0.0, le=1.0)
    reasons: list[str]


def build_cast(request: StoryRequest, profile: CultureProfile, size: int = 3) -> list[Character]:
    """The caller's cast first; generated members fill the remaining roles."""
    cast = [Character(name=m.name, role=m.role, pronouns=m.pronouns, traits=m.traits, goals=m.goals)
            for m in request.cast]
    gen = NameGenerator(profile, seed=request.seed or 0)
    rng = random.Random(request.seed or 0)
    for role in ROLES[len(cast):size]:
        p = gen.person()
        cast.append(Character(name=p.full, role=role, pronouns=PRONOUNS[p.gender], traits=rng.sample(TRAITS, 2)))
    return cast


def short_names(c: Character) -> set[str]:
    return set(c.name.split())


def check_mentions(text: str, cast: list[Character]) -> CharacterReport:
    known = {w: c.name for c in cast for w in short_names(c)}
    names = name_like_words(text) & (set(name_index()) | set(known))
    mentions = {c.name: 0 for c in cast}
    stray = 0  # mentions of names that are nobody in the cast
    for word in text.replace("’", "'").split():
        w = word.strip(".,;:!?\"'()").removesuffix("'s")
        if w in known:
            mentions[known[w]] += 1
        elif w in names:
            stray += 1
    unknown = sorted(n for n in names if n not in known)
    total = sum(mentions.values()) + stray
    consistency = 1.0 if total == 0 else sum(mentions.values()) / total
    reasons = [f"{n} is not in the cast" for n in unknown]
    return CharacterReport(mentions=mentions, unknown_names=unknown, character_consistency=round(consistency, 4),
                           reasons=reasons)
