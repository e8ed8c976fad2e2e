"""Cultural agent: names from another culture, sensitivity violations and stereotyped phrasing.

Names: which culture a name belongs to comes from the names each culture's generator can produce
(`culture.known_names`). A capitalised word of the text, away from a sentence start, that is in
another culture's names and not in the story culture's is a foreign name; it is replaced everywhere
with one local name. Sensitivities and stereotypes: `culture.sensitivity` (a rule checker for known
patterns, from the profiles' data). Both run per sentence in the gate before text is shown
(`agents/gate.py`, `agents/sentence_checks.py`); a flagged sentence is rewritten through the
Generator and kept when the checker passes it, else dropped.

cultural_fit is the share of sentences that carried no foreign name and no sensitivity or stereotype
finding, measured before repair; the reasons say what was found and what was done.
"""

from __future__ import annotations

import re
from functools import cache

from pydantic import BaseModel, Field

from emotional_engine.culture import NameGenerator, load_profile, profile_tags
from emotional_engine.culture.names import known_names
from emotional_engine.emotion.model import split_sentences

_CAPITALISED = re.compile(r"\b[A-Z][a-zà-ÿ'’-]+\b")
# English words that are also names somewhere (He, a Chinese surname; May; Will): never a foreign name
_FUNCTION_WORDS = set("he she it we they you him her his hers its our their my me us them i a an the and but or "
                      "if so as at in on to by of for from with may will can shall might must do did not no yes "
                      "this that these those there here then than when where who what how why all any some".split())


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
        if tags and culture not in tags and word not in allowed and word.lower() not in _FUNCTION_WORDS:
            found[word] = sorted(tags)
    return found


def _fit(text: str, flagged: set[str]) -> float:
    sentences = split_sentences(text)
    bad = sum(any(re.search(rf"\b{re.escape(w)}\b", s) for w in flagged) for s in sentences)
    return 1.0 if not sentences else 1.0 - bad / len(sentences)


def check_and_repair(text: str, culture: str, cast_names: list[str], seed: int = 0) -> tuple[str, CulturalReport]:
    """Replace every foreign name with one local name (the same one everywhere it occurs)."""
    allowed = {w for name in cast_names for w in name.split()}
    found = foreign_names(text, culture, allowed)
    fit = _fit(text, set(found))
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
    reasons = [f"replaced {old} (a name from {', '.join(found[old])}) with {new}" for old, new in replacements.items()]
    return text, CulturalReport(culture=culture, foreign_names=found, replacements=replacements,
                                cultural_fit=round(fit, 4), reasons=reasons)
