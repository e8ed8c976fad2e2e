"""Facts a scene states, found by small documented rules over its sentences (no model needed).

Kinds, and the rule that finds each (NAME is any word of a cast member's name):
- location: NAME, a position or motion verb, then in/at/into/to/... + "the/a/his/her PLACE" or a
  capitalised place ("Ada walked to the old market", "Ada sat in the kitchen").
- state: NAME + died / was killed / passed away / ... -> alive = dead (it never reverts).
- relation: "NAME, NAME2's sister", "NAME was NAME2's sister", "NAME2's sister NAME".
- attribute: "the/a/his/her [adj] COLOUR THING" -> THING's colour (things whose colour changes by
  nature, the sky or a face, are left out).
- knows: NAME + knew / learned / discovered / realised / found out (that) CLAUSE.
- action: NAME + a past-tense verb: used only for checks (the dead acting, who moved), not stored.
  Sentences that remember, mourn or dream of someone are not actions of theirs.
- place / object: capitalised words away from a sentence start that are no person's name, and
  nouns after a/an/the that recur in the scene: what the scene introduced.
What happened (kind `event`) comes from the summary, see memory.scene.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Literal

from pydantic import BaseModel, Field

from emotional_engine.culture.lexicon import name_index, name_like_words
from emotional_engine.domain import Character
from emotional_engine.text import split_sentences

FactKind = Literal["event", "location", "state", "relation", "attribute", "knows", "action", "place", "object"]

# word tables read best filled, not one word a line
# fmt: off
MOVE_VERBS = ("went", "walked", "ran", "hurried", "drove", "rode", "travelled", "traveled", "returned",
              "arrived", "came", "headed", "climbed", "stepped", "moved", "entered", "left", "reached",
              "crossed", "followed", "flew", "sailed", "wandered", "rushed", "slipped", "raced", "marched",
              "carried", "led")
STAY_VERBS = ("was", "stood", "sat", "waited", "slept", "lay", "stayed", "remained", "worked", "lived",
              "hid", "knelt", "paused", "lingered", "sheltered")
DEATH = r"(?:died|was killed|was dead|had died|passed away|lay dead|was murdered|drowned|was slain|perished)"
ACTION_VERBS = MOVE_VERBS + ("said", "smiled", "laughed", "spoke", "asked", "answered", "told", "took", "gave",
                             "looked", "turned", "opened", "closed", "shouted", "whispered", "nodded", "grabbed",
                             "held", "wrote", "sang", "cried", "ate", "drank", "stood", "sat", "waved", "saw", "wept",
                             "thought", "felt", "found", "kept", "brought", "caught", "fought", "sent", "built", "lit",
                             "led", "met", "paid", "put", "read", "threw", "won", "woke", "drew", "began", "broke",
                             "chose", "fell", "hid", "heard", "lost", "made", "knelt", "lay", "swam", "ate", "slept")
VERBS = frozenset(ACTION_VERBS + STAY_VERBS)
NOT_ACTIONS = {"died", "named", "called", "remembered", "mourned", "buried", "missed", "killed", "murdered"}
REMEMBERING = re.compile(r"\b(remember\w*|memor\w*|mourn\w*|grave|funeral|ghost|dream\w*|late|photograph|"
                         r"once had|used to|in the past|years ago)\b", re.I)
RELATIONS = ("sister", "brother", "mother", "father", "daughter", "son", "wife", "husband", "cousin", "aunt",
             "uncle", "grandmother", "grandfather", "friend", "teacher", "student", "neighbour", "neighbor",
             "boss", "fiancé", "fiancée", "niece", "nephew")
COLOURS = ("red", "blue", "green", "yellow", "black", "white", "brown", "grey", "gray", "purple", "orange",
           "pink", "golden", "silver", "crimson", "scarlet", "violet")
CHANGEABLE = {"sky", "light", "water", "sea", "clouds", "cloud", "face", "cheeks", "fire", "flames", "eyes",
              "smoke", "dawn", "sunset", "glow", "haze", "shadows", "shadow", "lips", "skin", "mist", "waves"}
ARTICLE_NOUN = re.compile(r"\b(?:a|an|the)\s+([a-z]{3,})(?:\s+([a-z]{3,}))?")
COMMON = {"way", "time", "moment", "day", "night", "morning", "evening", "end", "rest", "other", "same", "first",
          "last", "world", "air", "room", "one", "thing", "things", "people", "story", "place", "edge", "side",
          "old", "young", "little", "small", "big", "great", "long", "new", "whole", "next", "only", "and", "was",
          "with", "that", "who", "she", "his", "her", "they", "had", "were", "from", "into", "for", "but"}
NOT_PLACES = COMMON | {"news", "thought", "idea", "sight", "sound", "words", "question", "beginning", "least",
                       "once", "last", "same", "memory", "memories", "chance", "prospect", "hand", "hands", "feet",
                       "door", "window", "him", "her", "them", "me", "us", "it", "this", "that"}
# fmt: on

APPOSITION = r"(?:,[^,.!?]{1,40},)?"  # "Kofi, Ada's brother, waited"
PLACE = r"(?:(?:the|a|an|his|her|their)\s+((?:[a-z]+\s+)?[a-z]{3,})|([A-Z][a-z]+(?:\s[A-Z][a-z]+)?))"
PREP = r"(?:in|at|inside|into|to|onto|toward|towards|by|near|beside|outside)"


class Fact(BaseModel):
    scene: int = Field(ge=0)
    kind: FactKind
    text: str = Field(description="the fact as a sentence: what is embedded and shown in prompts")
    entities: list[str] = Field(default_factory=list, description="cast members' full names and terms")
    subject: str | None = None  # a cast member's full name, or a thing
    attribute: str | None = None  # location | alive | colour | relation:<other name> | knows | verb
    value: str | None = None


class CastIndex:
    """Every word of each cast member's name -> the full name, and a regex alternation of them."""

    def __init__(self, cast: list[Character]):
        self.by_word = {w: c.name for c in cast for w in c.name.split() if len(w) > 1}
        self.names = [c.name for c in cast]
        words = sorted(self.by_word, key=len, reverse=True)
        self.pattern = "|".join(re.escape(w) for w in words) or r"(?!x)x"

    def mentioned(self, text: str) -> list[str]:
        found = {self.by_word[w] for w in re.findall(rf"\b({self.pattern})\b", text)}
        return [n for n in self.names if n in found]


def head(phrase: str) -> str:
    """A place's comparable form: its last word, lowercased ("the old Market" -> "market")."""
    return phrase.split()[-1].lower()


def extract_facts(text: str, scene: int, cast: list[Character]) -> list[Fact]:
    ci = CastIndex(cast)
    n = ci.pattern
    facts: list[Fact] = []
    for s in split_sentences(text):
        who = ci.mentioned(s)
        facts += _sentence_facts(s, scene, ci, n, who)
    facts += _introduced(text, scene, ci)
    return facts


def _sentence_facts(s: str, scene: int, ci: CastIndex, n: str, who: list[str]) -> list[Fact]:
    out: list[Fact] = []
    if not who:
        out += _colours(s, scene)
        return out
    verbs = "|".join(MOVE_VERBS + STAY_VERBS)
    for m in re.finditer(rf"\b({n})\b{APPOSITION}(?:\s+\w+ly)?\s+({verbs})\b[^.!?;]{{0,30}}?\b{PREP}\s+{PLACE}", s):
        place = m.group(3) or m.group(4)
        if head(place) in NOT_PLACES:
            continue  # "Ada was happy at the news"
        name = ci.by_word[m.group(1)]
        out.append(
            Fact(
                scene=scene,
                kind="location",
                text=f"{name} was at {_the(place)}.",
                entities=[name, head(place)],
                subject=name,
                attribute="location",
                value=head(place),
            )
        )
    for m in re.finditer(rf"\b({n})\b\s+{DEATH}", s):
        name = ci.by_word[m.group(1)]
        out.append(
            Fact(
                scene=scene,
                kind="state",
                text=f"{name} died.",
                entities=[name],
                subject=name,
                attribute="alive",
                value="dead",
            )
        )
    rel = "|".join(RELATIONS)
    for a, b, r in _relations(s, n, rel):
        na, nb = ci.by_word[a], ci.by_word[b]
        if na != nb:
            out.append(
                Fact(
                    scene=scene,
                    kind="relation",
                    text=f"{na} is {nb}'s {r}.",
                    entities=[na, nb],
                    subject=na,
                    attribute=f"relation:{nb}",
                    value=r,
                )
            )
    for m in re.finditer(
        rf"\b({n})\b\s+(?:knew|learned|learnt|discovered|realised|realized|found out|"
        rf"understood)\s+(?:that\s+)?([^.!?]{{5,120}})",
        s,
    ):
        name = ci.by_word[m.group(1)]
        clause = m.group(2).strip().rstrip(",;")
        out.append(
            Fact(
                scene=scene,
                kind="knows",
                text=f"{name} knows that {clause}.",
                entities=sorted({name, *ci.mentioned(clause)}),
                subject=name,
                attribute="knows",
                value=clause,
            )
        )
    if not REMEMBERING.search(s):
        act = "|".join(ACTION_VERBS)
        for m in re.finditer(rf"\b({n})\b{APPOSITION}\s+(?:\w+ly\s+)?({act}|[a-z]+ed)\b", s):
            verb = m.group(2)
            if verb not in NOT_ACTIONS and not re.match(rf"\b({n})\b\s+{DEATH}", s[m.start() :]):
                name = ci.by_word[m.group(1)]
                out.append(
                    Fact(
                        scene=scene,
                        kind="action",
                        text=f"{name} {verb}.",
                        entities=[name],
                        subject=name,
                        attribute="verb",
                        value=verb,
                    )
                )
    out += _colours(s, scene)
    return out


def _relations(s: str, n: str, rel: str):
    for m in re.finditer(rf"\b({n})\b,?\s+(?:was\s+|is\s+)?(?:\w+\s+)?({n})['’]s\s+({rel})\b", s):
        yield m.group(1), m.group(2), m.group(3)
    for m in re.finditer(rf"\b({n})['’]s\s+({rel}),?\s+({n})\b", s):
        yield m.group(3), m.group(1), m.group(2)


def _colours(s: str, scene: int) -> list[Fact]:
    out = []
    for m in re.finditer(
        rf"\b(?:the|a|an|his|her|their|its)\s+(?:[a-z]+\s+)?({'|'.join(COLOURS)})\s+([a-z]{{3,}})\b", s
    ):
        colour, thing = m.group(1), m.group(2)
        colour = "grey" if colour == "gray" else colour
        if thing not in CHANGEABLE and thing not in COLOURS:
            out.append(
                Fact(
                    scene=scene,
                    kind="attribute",
                    text=f"The {thing} is {colour}.",
                    entities=[thing],
                    subject=thing,
                    attribute="colour",
                    value=colour,
                )
            )
    return out


def _introduced(text: str, scene: int, ci: CastIndex) -> list[Fact]:
    """Named places and things, and objects the scene keeps coming back to."""
    out = []
    cast_words = set(ci.by_word)
    people = name_index()
    sentences = split_sentences(text)
    for term in sorted({w.removesuffix("'s").removesuffix("’s") for w in name_like_words(text)}):
        if term in cast_words or term in people or len(term) < 3 or "'" in term or "’" in term:
            continue  # cast members, other people's names, "Al", "I'll"
        where = _clip(next((s for s in sentences if term in s), ""))
        out.append(Fact(scene=scene, kind="place", text=f"{term}: {where}", entities=[term], subject=term))
    # the word after an article, and the one after that (for "the red lantern"): recurring ones are things
    # (not a verb of the tables above: "the boats went out" is about boats)
    counts = Counter(w for m in ARTICLE_NOUN.finditer(text) for w in m.groups() if w and w not in VERBS)
    for noun, c in sorted(counts.items()):
        if c >= 2 and noun not in COMMON and noun not in COLOURS:
            where = _clip(next((s for s in sentences if re.search(rf"\b{noun}\b", s)), ""))
            out.append(Fact(scene=scene, kind="object", text=f"the {noun}: {where}", entities=[noun], subject=noun))
    return out


def _clip(sentence: str, words: int = 25) -> str:
    w = sentence.split()
    return " ".join(w[:words]) + (" …" if len(w) > words else "")


def _the(place: str) -> str:
    return place if place[0].isupper() else f"the {place}"
