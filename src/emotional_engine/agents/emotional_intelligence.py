"""Emotional-intelligence agent: steer each scene towards its target emotion and close the loop.

Guidance has three levers: a note for the prompt (the mood, what characters do and feel), sampling
settings (a little hotter for high-arousal targets) and a logit bias towards words the emotion
model reads as the target emotion and valence (`emotion/steering.py`), at a different strength
per candidate; the emotion adapter's context moves from the previous scene's target to this one's
sentence by sentence (`sentence_contexts`). Several candidates are written per
scene; `distance` (each measured by the emotion model against the target) is one term of the choice
among them (agents/choice.py). When the winner
still misses, the next scene's target valence is pushed the other way by part of the miss, so the
story's arc as a whole stays on course.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel

from emotional_engine.domain import SceneTarget

# what each target emotion asks of the writing (prompt notes, not a lexicon for measuring)
MOOD: dict[str, str] = {
    "joy": "The mood is joyful and warm: delight, laughter, relief, things going well.",
    "trust": "The mood is tender and trusting: kindness, loyalty, people relying on each other.",
    "fear": "The mood is frightening and tense: danger, dread, a threat coming closer.",
    "surprise": "The mood is astonished: something unexpected happens that changes everything.",
    "sadness": "The mood is sad and heavy: loss, grief, loneliness, tears.",
    "disgust": "The mood is repelled: something foul, rotten or morally revolting.",
    "anger": "The mood is angry: injustice, rage, a bitter quarrel.",
    "anticipation": "The mood is expectant: hope, plans, waiting for what comes next.",
    "neutral": "The mood is calm and matter-of-fact.",
}
HIGH_AROUSAL = {"fear", "surprise", "anger", "joy"}
# Logit-steering strengths across a scene's candidates. Measured on the embedded model: 1.0 moves a
# scene's valence by about 0.6 towards the target with fluent prose; 2.0 and up degrade into lists of
# emotion words, which the emotion model would happily pick, so the ladder stops at 1.2.
STEERING_RANGE = (0.6, 1.2)
MISS_GAIN = 0.5  # share of a scene's valence miss that the next scene's target absorbs
WORDS_PER_SENTENCE = 15  # about, in the embedded model's prose: sets how many steps a scene's schedule has


class Measured(Protocol):
    valence: float
    scores: dict[str, float]


class Guidance(BaseModel):
    note: str
    temperature: float


def guidance(target: SceneTarget, base_temperature: float) -> Guidance:
    lean = "bright" if target.valence > 0.5 else "dark" if target.valence < -0.5 else "balanced"
    note = f"{MOOD[target.emotion]} Overall the scene feels {lean}."
    temp = base_temperature + (0.1 if target.emotion in HIGH_AROUSAL else 0.0)
    return Guidance(note=note, temperature=round(min(temp, 1.5), 3))


def steering_strength(k: int, n: int) -> float:
    """The logit-bias strength of candidate k of n: one candidate gets 1.0, several spread over the range."""
    if n == 1:
        return 1.0
    lo, hi = STEERING_RANGE
    return round(lo + (hi - lo) * k / (n - 1), 4)


def sentence_contexts(start: list[float] | None, end: list[float] | None, words: int) -> list[list[float]] | None:
    """The emotion adapter's context sentence by sentence through a scene of about `words` words, moving
    linearly from `start` (the previous scene's target) so that the last sentence has `end` (this
    scene's); the runtime's `SamplingParams.emotion_schedule`. None without a context for the target;
    a constant schedule without a start."""
    if end is None:
        return None
    start = start or end
    n = max(1, round(words / WORDS_PER_SENTENCE))
    return [[round(a + (b - a) * (k + 1) / n, 4) for a, b in zip(start, end)] for k in range(n)]


def distance(measured: Measured, target: SceneTarget) -> float:
    """0 when the valence and the target emotion are both hit; at most 2."""
    return abs(measured.valence - target.valence) / 2 + (1.0 - measured.scores.get(target.emotion, 0.0))


def miss_correction(target: SceneTarget, measured_valence: float) -> float:
    """What the next target's valence absorbs of a scene's (or beat's) miss."""
    return MISS_GAIN * (target.valence - measured_valence)


def compensate(next_target: SceneTarget, target: SceneTarget, measured_valence: float) -> SceneTarget:
    """Shift the next target by part of this scene's valence miss, within [-1, 1]."""
    v = max(-1.0, min(1.0, next_target.valence + miss_correction(target, measured_valence)))
    return SceneTarget(valence=round(v, 4), emotion=next_target.emotion)
