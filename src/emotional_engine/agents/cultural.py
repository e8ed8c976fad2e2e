"""Cultural agent: names from another culture, sensitivity violations and stereotyped phrasing.

Names: which culture a name belongs to comes from the names each culture's generator can produce
(`culture.known_names`, indexed by `culture.lexicon.name_index`). A capitalised word of the text, away
from a sentence start, that is in another culture's names and not in the story culture's is a foreign
name, unless it is a word of a place in any profile or of a culture's name, a faith's (`culture.lexicon`'s
SACRED_NAMES), an ordinary English word
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

from emotional_engine.culture.lexicon import (
    SACRED_NAMES,
    after_a_place_preposition,
    is_ordinary,
    name_index,
    name_like_words,
    place_words,
)

# English words that are also names somewhere (He, a Chinese surname; Oh, a Korean one; May; Will):
# never a foreign name
_FUNCTION_WORDS = set(
    "he she it we they you him her his hers its our their my me us them i a an the and but or "
    "if so as at in on to by of for from with may will can shall might must do did not no yes "
    "oh ah hey "
    "this that these those there here then than when where who what how why all any some".split()
)


def _named_as_a_place(word: str, text: str) -> bool:
    """Every use of `word` follows a place preposition and none is possessive ("in Rome", not "in Rome's arms")."""
    uses = list(re.finditer(rf"\b{re.escape(word)}\b", text))
    return bool(uses) and all(
        after_a_place_preposition(re.findall(r"[\w']+", text[max(0, m.start() - 40) : m.start()])[-2:])
        and not re.match(r"['’]s\b", text[m.end() :])
        for m in uses
    )


def _used_as_a_word(word: str, text: str) -> bool:
    """Every use of an ordinary English word that is also a name ("King", "Day", "House") is part of a
    title or a name of several words, or follows an article: "the King", "New Year's Day"."""
    for m in re.finditer(rf"\b{re.escape(word)}\b", text):
        head = text[: m.start()].split()
        before = head[-1] if head else ""
        if not before or before.rstrip("\"”’')")[-1:] in ".!?…:" or text[m.start() - 1] in '"“‘(':
            continue  # a sentence start says nothing ("... a sentence. Good. Use a comma")
        opens_sentence = len(head) < 2 or head[-2][-1:] in ".!?…:"  # "Then Luke": "Then" is capitalised anyway
        after = (text[m.end() :].split()[:1] or [""])[0]
        titled = (before[:1].isupper() and not opens_sentence) or after[:1].isupper()
        if not titled and before.lower() not in ("the", "a", "an"):
            return False
    return True


def foreign_names(
    text: str, culture: str, allowed: set[str] = frozenset(), words: set[str] | None = None
) -> dict[str, list[str]]:
    """Name-like words of `text` (or the given `words`) that only other cultures' names have -> those cultures."""
    index, places = name_index(), place_words()
    found = {}
    for word in name_like_words(text) if words is None else words:
        tags = index.get(word)
        if (
            tags
            and culture not in tags
            and word not in allowed
            and word.lower() not in _FUNCTION_WORDS
            and word not in SACRED_NAMES
            and word not in places
            and not (is_ordinary(word, inflected=False) and _used_as_a_word(word, text))
            and not _named_as_a_place(word, text)
        ):
            found[word] = sorted(tags)
    return found
