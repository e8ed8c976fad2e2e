"""Choosing among candidates, and judging single sentences, on the whole picture.

A candidate (the opening sentences of a scene or beat) is judged on four things:

- `distance`: its emotion distance to the target (agents/emotional_intelligence.distance, 0..2);
- `adherence`: the mean of its relevance (agents/adherence.relevance) to each reference: the premise
  and the scene's plan (its goal and outline line), or for a beat the premise and the player's action;
- `fluency`: its mean token log-probability under the model (None where the backend gives none);
- `meta`: the share of its sentences that talk about the writing (agents/adherence.meta_rate).

    cost = W.emotion * distance + W.adherence * (1 - adherence) + W.fluency * -fluency + W.meta * meta

and the cheapest candidate goes on. WEIGHTS were chosen on the development requests by
`benchmarks/tune_choice.py` (the benchmark's held-out requests are never used), which prints the grid.

A sentence about to be shown is resampled (agents/scene_writer.Draft) when `sentence_problem` finds
one: it talks about the writing, it is a fragment of narration (a name or a word alone: the embedded
model falls into lists of them), its mean log-probability is under FLUENCY_FLOOR (the model itself
found it unlikely: garbled names, number runs, switches of language), or its MiniLM similarity to
the references is under OFF_TOPIC while it shares no content word with them (a sentence that has
left the story: "President Donald Trump's anti-government stance" in a taxi driver's story).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from emotional_engine.agents.adherence import content_lemmas, is_meta, meta_rate, relevance
from emotional_engine.memory.store import Embed


@dataclass(frozen=True)
class Weights:
    emotion: float
    adherence: float
    fluency: float
    meta: float


# the best objective on the development requests (benchmarks/tune_choice.py, docs/benchmarks.md); fluency
# made the choice worse there, and meta had no effect (no candidate opening talked about the writing)
WEIGHTS = Weights(emotion=1.0, adherence=3.0, fluency=0.0, meta=2.0)
FLUENCY_FLOOR = -3.2  # mean log-probability per token of a sentence
OFF_TOPIC = 0.05  # MiniLM cosine of a sentence to its references
FRAGMENT_WORDS = 3  # narration shorter than this is a fragment ("Fighting.", a name alone); dialogue may be
QUOTES = "\"“”‘’'"


@dataclass(frozen=True)
class Candidate:
    distance: float
    adherence: float
    fluency: float | None
    meta: float


def cost(c: Candidate, w: Weights | None = None) -> float:
    w = w or WEIGHTS
    return w.emotion * c.distance + w.adherence * (1 - c.adherence) + w.fluency * -(c.fluency or 0.0) + w.meta * c.meta


def choose(candidates: Sequence[Candidate], w: Weights | None = None) -> int:
    """The index of the cheapest candidate (the first on a tie)."""
    costs = [cost(c, w) for c in candidates]
    return int(np.argmin(costs))


def adherence(embed: Embed, texts: Sequence[str], references: Sequence[str]) -> list[float]:
    """Per text, its mean relevance to the references (1.0 each without references)."""
    refs = [r for r in references if r.strip()]
    if not refs:
        return [1.0] * len(texts)
    per_ref = [relevance(embed, texts, r) for r in refs]
    return [round(float(np.mean(col)), 4) for col in zip(*per_ref)]


def candidates(
    embed: Embed, texts: Sequence[str], distances: Sequence[float], fluencies: Sequence[float | None],
    references: Sequence[str],
) -> list[Candidate]:  # fmt: skip
    adh = adherence(embed, texts, references)
    return [Candidate(d, a, f, meta_rate(t)) for t, d, a, f in zip(texts, distances, adh, fluencies)]


@lru_cache(maxsize=64)
def _references(embed: Embed, refs: tuple[str, ...]) -> tuple[frozenset[str], np.ndarray]:
    """The references' content lemmas and MiniLM vectors: the same for every sentence of a draft."""
    return frozenset(content_lemmas(" ".join(refs))), embed(list(refs))


def sentence_problem(embed: Embed, sentence: str, logprob: float | None, references: Sequence[str]) -> str | None:
    """Why `sentence` should be written again ("meta", "fragment", "fluency", "off topic"), or None."""
    if is_meta(sentence):
        return "meta"
    if len(sentence.split()) < FRAGMENT_WORDS and not any(q in sentence for q in QUOTES):
        return "fragment"
    if logprob is not None and logprob < FLUENCY_FLOOR:
        return "fluency"
    refs = tuple(r for r in references if r.strip())
    if refs:
        lemmas, vectors = _references(embed, refs)
        if not content_lemmas(sentence) & lemmas and float(np.max(vectors @ embed([sentence])[0])) < OFF_TOPIC:
            return "off topic"
    return None
