"""The nine labels and their places on Russell's circumplex (valence, arousal), both in [-1, 1]."""

from __future__ import annotations

LABELS: tuple[str, ...] = ("joy", "trust", "fear", "surprise", "sadness", "disgust", "anger", "anticipation", "neutral")

# Approximate positions after Russell (1980) and Scherer's circumplex placements of these terms.
CIRCUMPLEX: dict[str, tuple[float, float]] = {
    "joy": (0.8, 0.5),
    "trust": (0.6, -0.2),
    "fear": (-0.6, 0.7),
    "surprise": (0.1, 0.8),
    "sadness": (-0.7, -0.5),
    "disgust": (-0.7, 0.3),
    "anger": (-0.6, 0.8),
    "anticipation": (0.4, 0.4),
    "neutral": (0.0, 0.0),
}
