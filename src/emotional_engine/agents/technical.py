"""Technical-quality agent: repetition and loops, cut-off sentences, readability, length.

Readability is textstat's Flesch-Kincaid grade against a ceiling per audience; length must be
within 10% of what was asked; a text whose last sentence is unfinished is trimmed back to its
last full sentence (the repair), and one that repeats itself is flagged for regeneration.
"""

from __future__ import annotations

import re
from collections import Counter

import textstat
from pydantic import BaseModel, Field

from emotional_engine.domain import Audience
from emotional_engine.text import ends_a_sentence, split_sentences

GRADE_CEILING: dict[str, float] = {"children": 6.0, "teen": 10.0, "adult": 16.0}
LENGTH_TOLERANCE = 0.10
REPEATED_4GRAM_LIMIT = 0.12  # share of 4-grams that occur more than once
_WORD = re.compile(r"[\w'’-]+")


class TechnicalReport(BaseModel):
    words: int
    target_words: int | None
    length_ok: bool
    repeated_4grams: float = Field(description="share of 4-grams occurring more than once")
    repeated_sentences: list[str]
    cut_off: bool
    grade: float
    grade_ceiling: float
    issues: list[str]
    score: float = Field(ge=0.0, le=1.0)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def repeated_ngram_share(tokens: list[str], n: int = 4) -> float:
    grams = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    total = sum(grams.values())
    return 0.0 if total == 0 else sum(c for c in grams.values() if c > 1) / total


# a sentence about the writing instead of in the story: the 135M model narrates its task ("Here is a
# rewritten version of the scene", "In scene 2, the narrator...", "within 150 words"); 48 of the
# 3,134 sentences of the consistency benchmark's stories, all but a couple of them such; and writing
# advice ("If your character arrives...", "... allows the reader to"), 65 more of 5,729
_ABOUT_THE_WRITING = re.compile(
    r"\bscenes?\s+\d+\b|\b(?:rewritten|revised|edited|reworded|shorter|longer) version of\b"
    r"|\bthis (?:sentence|paragraph|passage|prompt)\b|\b\d+ words\b|\bas an ai\b"
    r"|\b(?:the|this|your) (?:prompt|premise|instructions?|plot outline)\b"
    # advice to a writer ("If your character arrives...", "allows the reader to..."), "the next scene"
    r"|\byour (?:main )?(?:characters?|story|stories|writing|readers?|audience|scenes?|plot|protagonist|narrative"
    r"|creativity|twist|ending)\b|\bthe reader\b|\b(?:the|this|our) (?:final|next|previous|opening|last) scene\b"
    r"|^here(?:'s|’s| is| are) (?:\w+ ){0,4}(?:version|continuation|scene|story|passage|outline|example|idea|ideas"
    r"|plot|setup|rewrite|draft|tips?|suggestions?|opener|stories|steps?)\b"
    # a label line ("Premise: ...", "Original text modified: '...'", "Story transition: ...")
    r"|^(?:original|premise|title|summary|introduction|narrative summary|story|scene|chapter|plot|ending|note)"
    r"\b[\w ]{0,24}:"
    # the text speaking of itself as a text ("This piece highlights...", "The story is now unfolding")
    r"|\b(?:this|the|that|our|my) (?:story|tale|piece|narrative|storyline|excerpt|expansion|continuation|text)"
    r" (?:is now|is about|has|explores|highlights|opens|starts|feels|showcases|tells|combines|ends|offers|uses|conveys"
    r"|creates|captures|reflects)\b|\bthis ending\b"
    r"|\bthe original (?:text|story|ending|introduction|ideas?|version)\b"
    r"|\b(?:i'll|i will|i've|i have) (?:edit|edited|continue|recreate|recreated|refine|rewrite|rewritten|revise)\b"
    r"|^in (?:this|our) (?:scene|excerpt|passage|chapter)\b|\binto the narrative\b"
    r"|\bthe (?:following|next|previous) scenes\b|\bthis concludes\b|\bin the next sections?\b|\bif you want to add\b"
    r"|^(?:hi there|welcome)\b|\bi'm glad you liked\b|\bas requested\b",
    re.I,
)


def about_the_writing(sentence: str) -> bool:
    """The sentence speaks of the story's writing (scenes by number, versions, the prompt), not in
    it. Dialogue is never such: a sentence that opens with a quotation mark is story."""
    return sentence.lstrip()[:1] not in "\"“‘'" and bool(_ABOUT_THE_WRITING.search(sentence.strip()))


def check_text(text: str, audience: Audience, target_words: int | None = None) -> TechnicalReport:
    toks = words(text)
    sentences = split_sentences(text)
    normalised = [" ".join(words(s)) for s in sentences]
    repeated = sorted({s for s, c in Counter(normalised).items() if c > 1 and len(s.split()) >= 4})
    rep = repeated_ngram_share(toks)
    cut_off = bool(text.strip()) and not ends_a_sentence(text)
    grade = float(textstat.flesch_kincaid_grade(text)) if toks else 0.0
    ceiling = GRADE_CEILING[audience]
    length_ok = target_words is None or abs(len(toks) - target_words) <= LENGTH_TOLERANCE * target_words
    issues = []
    if rep > REPEATED_4GRAM_LIMIT:
        issues.append(f"repetitive: {rep:.0%} of 4-word sequences repeat")
    if repeated:
        issues.append(f"loops: {len(repeated)} sentence(s) repeated")
    if cut_off:
        issues.append("the last sentence is cut off")
    if grade > ceiling:
        issues.append(f"reading grade {grade:.1f} is above {ceiling:g} for a {audience} audience")
    if not length_ok:
        issues.append(f"{len(toks)} words, asked for {target_words} (more than {LENGTH_TOLERANCE:.0%} off)")
    # each problem costs a share of the score, repetition in proportion to how bad it is
    score = (
        1.0
        - min(1.0, rep) * 0.5
        - 0.15 * bool(repeated)
        - 0.15 * cut_off
        - 0.1 * (grade > ceiling)
        - 0.1 * (not length_ok)
    )
    return TechnicalReport(
        words=len(toks),
        target_words=target_words,
        length_ok=length_ok,
        repeated_4grams=round(rep, 4),
        repeated_sentences=repeated,
        cut_off=cut_off,
        grade=round(grade, 2),
        grade_ceiling=ceiling,
        issues=issues,
        score=round(max(0.0, score), 4),
    )
