"""Quality-assurance agent: the story's final scores, each in [0, 1], with the reasons.

- emotion_fit: 1 - distance/2 per scene (see agents.emotional_intelligence.distance), averaged.
- character_consistency, cultural_fit: from the character and cultural agents.
- coherence: cosine similarity of sentence embeddings between consecutive scenes and between each
  scene and the premise, clipped to [0, 1] and averaged.
- diversity: distinct-2, the share of word bigrams that are distinct.
- premise_adherence, plan_adherence (agents/adherence.py), with the reasons for a miss first in
  `reasons`; fluency (the model's geometric mean probability per token of what was shown); meta_rate
  (the share of sentences about the writing); resampled_sentences.
- overall: the mean of the five times `story_factor`: premise adherence under ON_PREMISE scales it
  by the square of the shortfall, talk about the writing by the gate's rules (a quarter of the
  sentences or more: 0), and craft words in more than CRAFT_BASE of the sentences. A fluent, consistent text
  that is not the story asked for, or that talks about its writing, must not pass: proven on a
  planted set of real outputs (tests/agents/test_quality_planted.py).
"""

from __future__ import annotations

import math

import numpy as np

from emotional_engine.agents.adherence import ON_PREMISE, craft_talk_rate, meta_rate
from emotional_engine.agents.technical import words
from emotional_engine.domain import Quality


def distinct_2(text: str) -> float:
    toks = words(text)
    bigrams = list(zip(toks, toks[1:]))
    return 1.0 if not bigrams else len(set(bigrams)) / len(bigrams)


def coherence(embed, premise: str, scenes: list[str]) -> float:
    """`embed(texts) -> (N, D)` unit vectors; 1.0 for a single scene close to its premise."""
    if not scenes:
        return 0.0
    v = np.asarray(embed([premise, *scenes]), dtype=np.float64)
    v /= np.linalg.norm(v, axis=1, keepdims=True).clip(1e-12)
    sims = [v[0] @ v[i] for i in range(1, len(v))] + [v[i] @ v[i + 1] for i in range(1, len(v) - 1)]
    return float(np.clip(sims, 0.0, 1.0).mean())


def assess(
    *,
    emotion_distances: list[float],
    character_consistency: float,
    cultural_fit: float,
    coherence_score: float,
    text: str,
    reasons: list[str],
    premise_adherence: float | None = None,
    plan_adherence: float | None = None,
    logprobs: list[float] | None = None,
    resampled_sentences: int | None = None,
) -> Quality:
    emotion_fit = float(np.mean([1.0 - d / 2 for d in emotion_distances])) if emotion_distances else 0.0
    diversity = distinct_2(text)
    parts = [emotion_fit, character_consistency, cultural_fit, coherence_score, diversity]
    talk = meta_rate(text)
    return Quality(
        emotion_fit=round(emotion_fit, 4),
        character_consistency=round(character_consistency, 4),
        cultural_fit=round(cultural_fit, 4),
        coherence=round(coherence_score, 4),
        diversity=round(diversity, 4),
        overall=round(float(np.mean(parts)) * story_factor(premise_adherence, talk, craft_talk_rate(text)), 4),
        reasons=reasons,
        premise_adherence=premise_adherence,
        plan_adherence=plan_adherence,
        fluency=round(math.exp(float(np.mean(logprobs))), 4) if logprobs else None,
        meta_rate=round(talk, 4),
        resampled_sentences=resampled_sentences,
    )


CRAFT_BASE = 0.1  # share of sentences with craft words that a story reaches (the planted set's stories: 0-9%)


def story_factor(premise_adherence: float | None, talk: float, craft: float) -> float:
    """How far the text is the story asked for, in [0, 1]: what scales `overall`."""
    on_premise = 1.0 if premise_adherence is None else min(1.0, premise_adherence / ON_PREMISE) ** 2
    return on_premise * max(0.0, 1.0 - 4 * talk) * max(0.0, 1.0 - 2 * max(0.0, craft - CRAFT_BASE))
