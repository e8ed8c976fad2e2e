"""Which capitalised words are names, and of what: the tables the cultural agent, the character checker
and memory's fact rules share.

- Person names: `name_index` (every name word each culture's generator can produce -> those
  cultures) and `all_person_names` (those plus every Faker locale's given names).
- Not persons: `culture_name_words` and `place_words` (the profiles' culture names and places),
  `SACRED_NAMES` (faiths, scriptures, whom they worship), a word after a place preposition ("in
  Rome", `after_a_place_preposition`), and ordinary English words (`ordinary_words`, `is_ordinary`).
- `name_like_words`: the capitalised words of a text that may be names (not at a sentence start).
"""

from __future__ import annotations

import re
from functools import cache

from emotional_engine.culture.names import known_names, person_provider
from emotional_engine.culture.profiles import load_profile, profile_tags

_CAPITALISED = re.compile(r"\b[A-Z][a-zà-ÿ'’-]+\b")

# faiths, their scriptures and whom they worship: some are given names somewhere (Christian, Jesus,
# Islam), but in a story they are almost always the faith; a story had "Islam" replaced by a person
SACRED_NAMES = frozenset(
    "God Gods Lord Allah Jesus Christ Buddha Islam Christian Christians Christianity Muslim "
    "Muslims Hindu Hindus Hinduism Buddhism Buddhist Buddhists Judaism Jewish Sikh Sikhs "
    "Shiva Vishnu Ganesha Heaven Quran Koran Bible Torah".split()
)

# "in Rome", "across Lagos", "moved to London": after these a name is a place (Rome, London, Sydney
# and Austin are given names too); "to"/"from" only after going somewhere ("gave it to Emily" is a person)
_IN_A_PLACE = {"in", "across", "through", "throughout"}
_GOING = set(
    "went go goes going gone came come comes coming return returns returned returning move moves moved "
    "moving travel travels travelled traveled travelling traveling flew fly flying drove drive driving "
    "sailed sail sailing headed heading back way road train bus flight trip journey ticket".split()
)
# "the village of Tan", "the streets of Rome"
_OF_A_PLACE = set(
    "village villages town towns city cities province island islands district kingdom county region "
    "state port harbour harbor capital streets outskirts suburbs walls gates ruins markets".split()
)


def after_a_place_preposition(before: list[str]) -> bool:
    """`before`: the words before a capitalised word, nearest last. True where a name there is a place."""
    last = before[-1].lower() if before else ""
    prior = before[-2].lower() if len(before) > 1 else ""
    return last in _IN_A_PLACE or last in ("to", "from") and prior in _GOING or last == "of" and prior in _OF_A_PLACE


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


@cache
def culture_name_words() -> frozenset[str]:
    """The words of every culture's name ("French (France)", "Yoruba (Nigeria)"): places and peoples, not
    persons, though some are given names somewhere ("France")."""
    return frozenset(w for tag in profile_tags() for w in _CAPITALISED.findall(load_profile(tag).name))


@cache
def place_words() -> frozenset[str]:
    """Capitalised words of every culture's places ("a Paris banlieue", "the Lille metro") and names."""
    places = (p for tag in profile_tags() for p in load_profile(tag).settings.places)
    return culture_name_words() | {w for p in places for w in _CAPITALISED.findall(p)}


def name_like_words(text: str) -> set[str]:
    """Capitalised words seen at least once away from a sentence start (so "Will you?" is no name); an
    opening quote or bracket starts a sentence too (she said, "Oh, look")."""
    out = set()
    for m in _CAPITALISED.finditer(text):
        if text[m.start() - 1 : m.start()] in ('"', "“", "‘", "("):
            continue
        before = text[: m.start()].rstrip(" \t\"'“‘(”’)")  # '... heart…” Love and' starts one too
        if before and before[-1] not in ".!?…\n:":
            out.add(m.group())
    return out


@cache
def ordinary_words() -> frozenset[str]:
    """English words that are written in lower case (Webster's 2nd via english-words): 'will', 'rose', 'hope'."""
    from english_words import get_english_words_set

    return frozenset(w for w in get_english_words_set(["web2"], lower=False, alpha=True) if w.islower())


def is_ordinary(word: str, inflected: bool = True) -> bool:
    """An ordinary English word; with `inflected`, also in a plural or -ed/-ing form ('Customers')."""
    low, words = word.lower(), ordinary_words()
    return (
        low in words
        or inflected
        and any(low.endswith(e) and low[: -len(e)] in words for e in ("s", "es", "ed", "d", "ing"))
    )


@cache
def all_person_names() -> frozenset[str]:
    """Given names from every Faker locale (Latin script), plus every name the culture profiles produce."""
    from faker.config import AVAILABLE_LOCALES

    names = set(name_index())
    for loc in AVAILABLE_LOCALES:
        provider = person_provider(loc)
        if provider is None:
            continue
        for attr in ("first_names", "first_names_female", "first_names_male"):
            values = provider.__dict__.get(attr)
            if isinstance(values, (list, tuple, dict)):
                names.update(str(v) for v in values)
    return frozenset(n for n in names if n.isalpha() and n[0].isupper() and all(ord(c) < 0x250 for c in n))
