"""Cultural agent, first version: person names that belong to another culture are found and
replaced consistently with names of the story's culture.

Which culture a name belongs to comes from the names each culture's generator can produce
(`culture.known_names`). A capitalised word of the text, away from a sentence start, that is in
another culture's names and not in the story culture's is a foreign name. (Sensitivity checks and stereotyped phrasing come with the culture issue.)
"""

from __future__ import annotations

import re
from functools import cache

from pydantic import BaseModel, Field

from emotional_engine.culture import NameGenerator, load_profile, profile_tags
from emotional_engine.culture.names import known_names

_CAPITALISED = re.compile(r"\b[A-Z][a-zà-ÿ'’-]+\b")


class CulturalReport(BaseModel):
    culture: str
    foreign_names: dict[str, list[str]] = Field(description="name -> cultures it belongs to")
    replacements: dict[str, str]
    cultural_fit: float = Field(ge=0.0, le=1.0)
    reasons: list[str]


@cache
def name_index() -> dict[str, frozenset[str]]:
    """Every given/family/middle name word a culture's generator can produce -> those cultures."""
    index: dict[str, set[str]] = {}
    for tag in profile_tags():
        for names in known_names(tag).values():
            for name in names:
                for word in name.split():
                    index.setdefault(word, set()).add(tag)
    return {k: frozenset(v) for k, v in index.items()}


def name_like_words(text: str) -> set[str]:
    """Capitalised words seen at least once away from a sentence start (so "Will you?" is no name)."""
    out = set()
    for m in _CAPITALISED.finditer(text):
        before = text[: m.start()].rstrip(" \t\"'“‘(")
        if before and before[-1] not in ".!?…\n:":
            out.add(m.group())
    return out


def foreign_names(text: str, culture: str, allowed: set[str] = frozenset()) -> dict[str, list[str]]:
    index = name_index()
    found = {}
    for word in name_like_words(text):
        tags = index.get(word)
        if tags and culture not in tags and word not in allowed:
            found[word] = sorted(tags)
    return found


def check_and_repair(text: str, culture: str, cast_names: list[str], seed: int = 0) -> tuple[str, CulturalReport]:
    """Replace every foreign name with one local name (the same one everywhere it occurs)."""
    allowed = {w for name in cast_names for w in name.split()}
    found = foreign_names(text, culture, allowed)
    gen = NameGenerator(load_profile(culture), seed=seed + 7919)
    used = allowed | set(_CAPITALISED.findall(text))
    replacements = {}
    for word in sorted(found):
        new = gen.person().given
        while new in used:
            new = gen.person().given
        used.add(new)
        replacements[word] = new
        text = re.sub(rf"\b{re.escape(word)}\b", new, text)
    names_seen = max(1, len({w for w in name_like_words(text) if w in name_index()}) + len(found))
    fit = 1.0 - len(found) / names_seen
    reasons = [f"replaced {old} (a name from {', '.join(found[old])}) with {new}" for old, new in replacements.items()]
    return text, CulturalReport(culture=culture, foreign_names=found, replacements=replacements,
                                cultural_fit=round(fit, 4), reasons=reasons)
