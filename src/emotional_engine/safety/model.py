"""Safety classifier: the emotion model's features (MiniLM sentence embedding + VADER scores, the
same loaded embedder) -> a logistic head over `labels.CLASSES` (safe, and each unsafe category at
severity 1 and 2).

Per sentence, with q the head's probabilities over the 15 classes:

    p(category) = q(category:1) + q(category:2)             p(safe) = q(safe)
    safe            if p(safe) >= safe_threshold (chosen in training, stored in the head file)
    otherwise       category = argmax of p over the unsafe categories,
                    severity = 2 if q(category:2) >= q(category:1) else 1

So a sentence is called unsafe only when p(safe) falls below the threshold, and its category
is the one that holds most of that mass.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emotional_engine.emotion.model import features

from .labels import CATEGORIES, CLASSES, UNSAFE

HEAD_PATH = Path(__file__).parent / "data" / "head.npz"
SAFE_THRESHOLD = 0.5  # the default of `decide`; the shipped head carries its own

# (15,) -> (8,): which head classes add up to each category
_CLASS_TO_CATEGORY = np.array([[float(c == k or c.startswith(k + ":")) for k in CATEGORIES] for c in CLASSES])


@dataclass(frozen=True)
class Prediction:
    category: str
    severity: int  # 0 for safe
    probability: float  # p(category)
    scores: dict[str, float]  # p over CATEGORIES


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class SafetyModel:
    _instance: SafetyModel | None = None
    _lock = threading.Lock()

    def __init__(
        self,
        embedder,
        vader,
        coef: np.ndarray,
        intercept: np.ndarray,
        vader_weight: float,
        safe_threshold: float = SAFE_THRESHOLD,
    ):
        self.embedder = embedder
        self.vader = vader
        self.coef = coef  # (15, 388)
        self.intercept = intercept  # (15,)
        self.vader_weight = vader_weight
        self.safe_threshold = safe_threshold

    @classmethod
    def load(cls, head_path: Path | None = None) -> SafetyModel:
        """The shared model, built on first use; it borrows the emotion model's MiniLM and VADER."""
        if head_path is not None:
            return cls._build(head_path)
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls._build(HEAD_PATH)
            return cls._instance

    @classmethod
    def _build(cls, head_path: Path) -> SafetyModel:
        from emotional_engine.emotion import EmotionModel

        if not Path(head_path).exists():
            raise FileNotFoundError(
                f"safety head {head_path} is missing; train it with `python -m emotional_engine.safety.training`"
            )
        h = np.load(head_path)
        classes = tuple(str(x) for x in h["classes"])
        if classes != CLASSES:
            raise ValueError(f"safety head classes {classes} differ from {CLASSES}")
        emotion = EmotionModel.load()
        return cls(
            emotion.embedder,
            emotion.vader,
            h["coef"],
            h["intercept"],
            float(h["vader_weight"]),
            float(h["safe_threshold"]),
        )

    def class_probabilities(self, texts: list[str]) -> np.ndarray:
        """(N, 15) probabilities over CLASSES, in one embedding call."""
        x = features(self.embedder, self.vader, texts, self.vader_weight)  # (N, 388)
        return _softmax(x @ self.coef.T + self.intercept)

    def predict(self, texts: list[str]) -> list[Prediction]:
        if not texts:
            return []
        q = self.class_probabilities(list(texts))  # (N, 15)
        return [decide(row, self.safe_threshold) for row in q]


def decide(q: np.ndarray, safe_threshold: float = SAFE_THRESHOLD) -> Prediction:
    """One sentence's category and severity from its (15,) class probabilities (rule in the module doc)."""
    p = q @ _CLASS_TO_CATEGORY  # (8,)
    scores = {k: float(p[i]) for i, k in enumerate(CATEGORIES)}
    if scores["safe"] >= safe_threshold:
        return Prediction("safe", 0, scores["safe"], scores)
    category = max(UNSAFE, key=scores.get)
    severity = 2 if q[CLASSES.index(f"{category}:2")] >= q[CLASSES.index(f"{category}:1")] else 1
    return Prediction(category, severity, scores[category], scores)
