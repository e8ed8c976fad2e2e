"""Fast tests: no model loaded."""

import subprocess
import sys

from emotional_engine.emotion import CIRCUMPLEX, LABELS
from emotional_engine.text import split_sentences


def test_labels_are_plutchik_plus_neutral():
    assert set(LABELS) == {"joy", "trust", "fear", "surprise", "sadness", "disgust", "anger", "anticipation", "neutral"}
    assert set(CIRCUMPLEX) == set(LABELS)
    assert all(-1 <= v <= 1 and -1 <= a <= 1 for v, a in CIRCUMPLEX.values())
    assert CIRCUMPLEX["neutral"] == (0.0, 0.0)


def test_split_sentences():
    text = 'She ran. "Wait!" he called. Was it over?\n\nYes... Dr Smith left at 3.5 p.m. Then silence.'
    assert split_sentences(text) == [
        "She ran.",
        '"Wait!" he called.',
        "Was it over?",
        "Yes...",
        "Dr Smith left at 3.5 p.m.",
        "Then silence.",
    ]
    assert split_sentences("   ") == []
    assert split_sentences("no end") == ["no end"]


def test_import_is_lazy():
    code = (
        "import sys, emotional_engine.emotion as e; "
        "print(int('sentence_transformers' in sys.modules), int(e.EmotionModel._instance is None))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", "1"]
