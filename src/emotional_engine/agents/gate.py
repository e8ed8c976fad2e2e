"""The fast checks every sentence passes before it reaches the reader.

A streamed sentence cannot be taken back, so whatever must never be shown is checked here, one
sentence at a time, in well under the time the model takes to write the next one:
- lines the model wrote about the story instead of in it ("Scene 2:"), and headings or fragments
  that do not end as a sentence, are dropped;
- person names from another culture are replaced, the same replacement for the same name for
  the whole story (the cast's own names are always allowed);
- further checks (the audience safety check, stereotyped phrasing) plug in as `SentenceCheck`s:
  each returns the sentence, possibly rewritten, or None to drop it, with a reason.
Slower checks (the technical, character and emotion agents) run on the finished scene and shape
the next one.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from emotional_engine.agents.cultural import foreign_names
from emotional_engine.agents.technical import about_the_writing
from emotional_engine.culture import NameGenerator, load_profile
from emotional_engine.culture.lexicon import name_like_words
from emotional_engine.text import ends_a_sentence, strip_meta_lines

_FIRST_WORD = re.compile(r"^[\"'“‘(\[]*([A-Z][a-zà-ÿ'’-]+)\b")


@cache
def common_words() -> frozenset[str]:
    """Dale-Chall's ~2,900 easy English words (shipped with textstat): a capitalised word at a
    sentence start that is one of these ("Will", "Hope", "Mark") is read as a word, not a name."""
    path = resources.files("textstat").joinpath("resources/en/easy_words.txt")
    return frozenset(w.strip().lower() for w in path.read_text(encoding="utf-8").splitlines() if w.strip())


def sentence_names(sentence: str) -> set[str]:
    """Name-like words of one sentence, its first word included unless it is a common word."""
    names = name_like_words(sentence)
    m = _FIRST_WORD.match(sentence)
    if m and m.group(1).lower() not in common_words():
        names.add(m.group(1))
    return names


# (sentence, the story text shown before it) -> (sentence or None to drop it, reason or None)
SentenceCheck = Callable[[str, str], Awaitable[tuple[str | None, str | None]]]
CONTEXT_CHARS = 400  # of the text shown so far, handed to the checks


@dataclass
class SceneGateReport:
    foreign_names: dict[str, list[str]] = field(default_factory=dict)  # name -> cultures it belongs to
    sentences: int = 0  # sentences the model wrote in this scene
    culturally_flagged: int = 0  # of them: a foreign name or a sensitivity/stereotype finding
    dropped: int = 0
    raw: list[str] = field(default_factory=list)  # the sentences as written, before any repair
    reasons: list[str] = field(default_factory=list)

    @property
    def cultural_fit(self) -> float:
        """The share of the scene's sentences with no cultural finding."""
        return round(1.0 - self.culturally_flagged / self.sentences, 4) if self.sentences else 1.0


class SentenceGate:
    def __init__(self, culture: str, cast_names: list[str], seed: int, checks: list[SentenceCheck] | None = None):
        self.culture = culture
        self.allowed = {w for name in cast_names for w in name.split()}
        self.replacements: dict[str, str] = {}
        self._names = NameGenerator(load_profile(culture), seed=seed + 7919)
        self._used = set(self.allowed)
        self.checks = list(checks or [])
        self.scene = SceneGateReport()
        self.shown = ""  # the story text shown so far

    def start_scene(self, index: int = 0) -> SceneGateReport:
        """A fresh report for scene (or beat) `index`; replacements carry over."""
        self.scene = SceneGateReport()
        for check in self.checks:
            if hasattr(check, "start_scene"):
                check.start_scene(index)
        return self.scene

    def safety_repairs(self) -> list:
        """What the safety check rewrote or dropped, for the story's safety report."""
        return [r for check in self.checks for r in getattr(check, "repairs", [])]

    def _local_name(self) -> str:
        new = self._names.person().given
        while new in self._used:
            new = self._names.person().given
        self._used.add(new)
        return new

    def _replace_names(self, sentence: str) -> tuple[str, bool]:
        found = foreign_names(sentence, self.culture, self.allowed, sentence_names(sentence))
        for word in sorted(found):
            if word not in self.replacements:
                self.replacements[word] = self._local_name()
                self.scene.reasons.append(
                    f"replaced {word} (a name from {', '.join(found[word])}) with {self.replacements[word]}"
                )
            self.scene.foreign_names[word] = found[word]
        for old, new in self.replacements.items():  # earlier replacements too, wherever the name recurs
            sentence = re.sub(rf"\b{re.escape(old)}\b", lambda _, new=new: new, sentence)  # a name is no template
        return sentence, bool(found)

    async def check(self, sentence: str) -> str | None:
        """The sentence as it may be shown, or None when it must not be. Call `shown_as` with what
        was finally shown (with its separator) so the next checks see it."""
        text = strip_meta_lines(sentence)
        if not text or not ends_a_sentence(text) or about_the_writing(text):
            return None  # a heading, a fragment between paragraphs, or the model talking about its task
        self.scene.sentences += 1
        self.scene.raw.append(text)
        text, foreign = self._replace_names(text)
        flagged = foreign
        before = self.shown[-CONTEXT_CHARS:]
        for check in self.checks:
            out, reason = await check(text, before)
            if reason:
                self.scene.reasons.append(reason)
                flagged |= getattr(check, "kind", "") == "cultural"
            if out is None:
                self.scene.dropped += 1
                self.scene.culturally_flagged += flagged
                return None
            text = out
        self.scene.culturally_flagged += flagged
        return text

    def shown_as(self, piece: str) -> None:
        self.shown += piece

    def remember(self, scene_text: str) -> None:
        """A scene written earlier (a resumed job): what was shown, and its names, stay taken."""
        self.shown += ("\n\n" if self.shown else "") + scene_text
        self._used |= set(name_like_words(scene_text))
