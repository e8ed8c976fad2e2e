"""Emotion model: Plutchik's eight emotions plus neutral, valence and arousal, arcs of texts.

Importing this package loads nothing; `EmotionModel.load()` loads MiniLM and the head on first use.
"""

from .labels import CIRCUMPLEX, LABELS
from .model import ArcWindow, EmotionModel, EmotionScore, analyze

__all__ = ["LABELS", "CIRCUMPLEX", "EmotionModel", "EmotionScore", "ArcWindow", "analyze"]
