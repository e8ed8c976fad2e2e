"""Adherence: is a text the story that was asked for? Measures for candidates and sentences.

- `content_lemmas(text)`: the text's content words (scikit-learn's English stop words left out, less
  the few content words that list holds), each with its lemmas from lemminflect, so that "letters"
  meets "letter" and "found" meets "find".
- `lexical_recall(text, reference)`: the share of the reference's content words (a premise, a
  scene's outline line) that the text contains, in any form.
- `relevance(embed, texts, reference)`: per text, the mean of its MiniLM cosine similarity to the
  reference and its lexical recall. Similarity alone rates fluent prose on any subject fairly high;
  recall alone misses a paraphrase; together they separate on-premise openings from drifted ones
  (`benchmarks/adherence_eval.py`, on real openings labelled by hand).
- `meta_rate(text)`: the share of sentences the sentence gate's rules read as talk about the
  writing (`technical.about_the_writing`, or a line that is only a heading).
- `craft_talk_rate(text)`: the share of sentences with a word about the craft (story, scene, reader,
  plot...): a density, where the gate's rules look for phrasings.
- `story_adherence(...)`: a finished story's premise and plan adherence, with reasons for a miss
  (relevance under ON_PREMISE), for the quality report.
- Fluency is the language model's own mean token log-probability (`Completion.mean_logprob`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache

from lemminflect import getAllLemmas
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from emotional_engine.agents.technical import about_the_writing
from emotional_engine.memory.store import Embed
from emotional_engine.text import split_sentences, strip_meta_lines

_WORD = re.compile(r"[a-z]+")  # "brother's" -> brother, s
# scikit-learn's stop words hold some words a premise turns on ("finds a letter", "a fire", "the
# top floor"): those stay content words
_CONTENT_AFTER_ALL = {"bill", "bottom", "call", "cry", "describe", "detail", "empty", "fill", "find", "fire", "found",
                      "front", "full", "interest", "keep", "mill", "move", "name", "part", "serious", "show", "side",
                      "sincere", "system", "thick", "thin", "top"}  # fmt: skip
STOP_WORDS = ENGLISH_STOP_WORDS - _CONTENT_AFTER_ALL


@cache
def _lemmas(word: str) -> frozenset[str]:
    """The word and every lemma lemminflect knows for it (as a noun, a verb, an adjective...)."""
    forms = {word}
    for lemmas in getAllLemmas(word).values():
        forms.update(lemmas)
    return frozenset(forms)


def content_words(text: str) -> list[str]:
    """The text's words that carry content, lower-cased, in order (stop words and one-letter words out)."""
    return [w for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in STOP_WORDS]


def content_lemmas(text: str) -> set[str]:
    return {lemma for w in content_words(text) for lemma in _lemmas(w)}


def lexical_recall(text: str, reference: str) -> float:
    """The share of `reference`'s distinct content words found in `text` in some form (1.0 for a
    reference without content words)."""
    wanted = dict.fromkeys(content_words(reference))
    if not wanted:
        return 1.0
    have = content_lemmas(text)
    return sum(bool(_lemmas(w) & have) for w in wanted) / len(wanted)


def relevance(embed: Embed, texts: Sequence[str], reference: str) -> list[float]:
    """Per text: (MiniLM cosine to `reference` + lexical recall of `reference`) / 2, in [-0.5, 1]."""
    if not texts:
        return []
    vectors = embed([reference, *texts])
    cosines = vectors[1:] @ vectors[0]
    return [round((float(c) + lexical_recall(t, reference)) / 2, 4) for c, t in zip(cosines, texts)]


def is_meta(sentence: str) -> bool:
    """The gate's rules: the sentence talks about the writing, or is only a heading or label."""
    return about_the_writing(sentence) or not strip_meta_lines(sentence).strip()


def meta_rate(text: str) -> float:
    """The share of the text's sentences that `is_meta` flags (0.0 for no sentences)."""
    sentences = split_sentences(text)
    return sum(map(is_meta, sentences)) / len(sentences) if sentences else 0.0


# words about the craft of writing: a story uses them now and then ("he told her the story"), a text
# about a story in every other sentence
_CRAFT = re.compile(
    r"\b(?:stor(?:y|ies)|scenes?|ending|narrat\w*|characters?|readers?|tone|paragraphs?|chapters?|plot|themes?"
    r"|drafts?|versions?|sentences?|passages?|excerpt|prompt|storyline|protagonist|introduction|descriptive"
    r"|dialogue|pacing|emotional depth|atmosphere)\b",
    re.I,
)


def craft_talk_rate(text: str) -> float:
    """The share of sentences that use a word about the craft of writing (0.0 for no sentences): 0-9%
    in the on-premise stories of the planted set, 3-47% in its texts that talk about the writing."""
    sentences = split_sentences(text)
    return sum(bool(_CRAFT.search(s)) for s in sentences) / len(sentences) if sentences else 0.0


# the relevance at which an opening reads as on-premise: the best F1 on the labelled openings' dev
# half (benchmarks/adherence_eval.py); applied to whole stories and scenes, whose MiniLM vector
# reads their first 256 tokens
ON_PREMISE = 0.313


def missing_words(text: str, reference: str) -> list[str]:
    """The reference's content words that the text holds in no form, in order."""
    have = content_lemmas(text)
    return [w for w in dict.fromkeys(content_words(reference)) if not _lemmas(w) & have]


def story_adherence(
    embed: Embed, premise: str, scenes: Sequence[str], outlines: Sequence[str | None]
) -> tuple[float, float | None, list[str]]:
    """(premise adherence of the whole text, mean plan adherence of the scenes with an outline line,
    reasons for what misses), each adherence clipped to [0, 1]."""
    text = "\n\n".join(scenes)
    premise_score = max(0.0, relevance(embed, [text], premise)[0])
    reasons = []
    if premise_score < ON_PREMISE:
        missing = missing_words(text, premise)
        reasons.append(
            f"premise: the story is not the one asked for (adherence {premise_score:.2f}"
            + (f"; never mentions: {', '.join(missing)}" if missing else "")
            + ")"
        )
    planned = [(i, t, o) for i, (t, o) in enumerate(zip(scenes, outlines)) if o]
    plan_scores = []
    for i, t, o in planned:
        score = max(0.0, relevance(embed, [t], o)[0]) if t else 0.0
        plan_scores.append(score)
        if score < ON_PREMISE:
            reasons.append(f"scene {i + 1}: strays from its outline ({o}; adherence {score:.2f})")
    plan_score = round(sum(plan_scores) / len(plan_scores), 4) if plan_scores else None
    return round(premise_score, 4), plan_score, reasons
