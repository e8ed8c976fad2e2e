"""Cultural agent: names from another culture, sensitivity violations and stereotyped phrasing.

Names: which culture a name belongs to comes from the names each culture's generator can produce
(`culture.known_names`). A capitalised word of the text, away from a sentence start, that is in
another culture's names and not in the story culture's is a foreign name, unless it is a word of
a place in any profile or of a culture's name, a faith's (SACRED_NAMES), an ordinary English word
used as one ("the King", "New Year's Day"), or a word only ever after a place preposition ("in
Rome", "moved to London"); the gate replaces it with one local name for the whole story.
Sensitivities and stereotypes: `culture.sensitivity` (a rule checker for known patterns, from the
profiles' data). Both run per sentence in the gate before text is shown
(`agents/gate.py`, `agents/sentence_checks.py`); a flagged sentence is rewritten through the
Generator and kept when the checker passes it, else dropped.

cultural_fit (the gate's report) is the share of sentences that carried no foreign name and no
sensitivity or stereotype finding, measured before repair.
"""

from __future__ import annotations

import re
from functools import cache

from emotional_engine.culture import load_profile, profile_tags
from emotional_engine.culture.names import known_names

_CAPITALISED = re.compile(r"\b[A-Z][a-zà-ÿ'’-]+\b")
# English words that are also names somewhere (He, a Chinese surname; Oh, a Korean one; May; Will):
# never a foreign name
_FUNCTION_WORDS = set("he she it we they you him her his hers its our their my me us them i a an the and but or "
                      "if so as at in on to by of for from with may will can shall might must do did not no yes "
                      "oh ah hey "
                      "this that these those there here then than when where who what how why all any some".split())

# faiths, their scriptures and whom they worship: some are given names somewhere (Christian, Jesus,
# Islam), but in a story they are almost always the faith; a story had "Islam" replaced by a person
SACRED_NAMES = frozenset("God Gods Lord Allah Jesus Christ Buddha Islam Christian Christians Christianity Muslim "
                         "Muslims Hindu Hindus Hinduism Buddhism Buddhist Buddhists Judaism Jewish Sikh Sikhs "
                         "Shiva Vishnu Ganesha Heaven Quran Koran Bible Torah".split())

# "in Rome", "across Lagos", "moved to London": after these a name is a place (Rome, London, Sydney
# and Austin are given names too); "to"/"from" only after going somewhere ("gave it to Emily" is a person)
_IN_A_PLACE = {"in", "across", "through", "throughout"}
_GOING = set("went go goes going gone came come comes coming return returns returned returning move moves moved "
             "moving travel travels travelled traveled travelling traveling flew fly flying drove drive driving "
             "sailed sail sailing headed heading back way road train bus flight trip journey ticket".split())
# "the village of Tan", "the streets of Rome"
_OF_A_PLACE = set("village villages town towns city cities province island islands district kingdom county region "
                  "state port harbour harbor capital streets outskirts suburbs walls gates ruins markets".split())


def after_a_place_preposition(before: list[str]) -> bool:
    """`before`: the words before a capitalised word, nearest last. True where a name there is a place."""
    last = before[-1].lower() if before else ""
    prior = before[-2].lower() if len(before) > 1 else ""
    return last in _IN_A_PLACE or last in ("to", "from") and prior in _GOING or last == "of" and prior in _OF_A_PLACE


def _named_as_a_place(word: str, text: str) -> bool:
    """Every use of `word` follows a place preposition and none is possessive ("in Rome", not "in Rome's arms")."""
    uses = list(re.finditer(rf"\b{re.escape(word)}\b", text))
    return bool(uses) and all(
        after_a_place_preposition(re.findall(r"[\w']+", text[max(0, m.start() - 40): m.start()])[-2:])
        and not re.match(r"['’]s\b", text[m.end():]) for m in uses)


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


def _used_as_a_word(word: str, text: str) -> bool:
    """Every use of an ordinary English word that is also a name ("King", "Day", "House") is part of a
    title or a name of several words, or follows an article: "the King", "New Year's Day"."""
    for m in re.finditer(rf"\b{re.escape(word)}\b", text):
        head = text[: m.start()].split()
        before = head[-1] if head else ""
        if not before or before.rstrip("\"”’')")[-1:] in ".!?…:" or text[m.start() - 1] in "\"“‘(":
            continue  # a sentence start says nothing ("... a sentence. Good. Use a comma")
        opens_sentence = len(head) < 2 or head[-2][-1:] in ".!?…:"  # "Then Luke": "Then" is capitalised anyway
        after = (text[m.end():].split()[:1] or [""])[0]
        titled = (before[:1].isupper() and not opens_sentence) or after[:1].isupper()
        if not titled and before.lower() not in ("the", "a", "an"):
            return False
    return True


def name_like_words(text: str) -> set[str]:
    """Capitalised words seen at least once away from a sentence start (so "Will you?" is no name); an
    opening quote or bracket starts a sentence too (she said, "Oh, look")."""
    out = set()
    for m in _CAPITALISED.finditer(text):
        if text[m.start() - 1: m.start()] in ("\"", "“", "‘", "("):
            continue
        before = text[: m.start()].rstrip(" \t\"'“‘(”’)")  # '... heart…” Love and' starts one too
        if before and before[-1] not in ".!?…\n:":
            out.add(m.group())
    return out


def foreign_names(text: str, culture: str, allowed: set[str] = frozenset(),
                  words: set[str] | None = None) -> dict[str, list[str]]:
    """Name-like words of `text` (or the given `words`) that only other cultures' names have -> those cultures."""
    from emotional_engine.agents.character_check import is_ordinary  # it imports this module

    index, places = name_index(), place_words()
    found = {}
    for word in name_like_words(text) if words is None else words:
        tags = index.get(word)
        if (tags and culture not in tags and word not in allowed and word.lower() not in _FUNCTION_WORDS
                and word not in SACRED_NAMES and word not in places
                and not (is_ordinary(word, inflected=False) and _used_as_a_word(word, text))
                and not _named_as_a_place(word, text)):
            found[word] = sorted(tags)
    return found
