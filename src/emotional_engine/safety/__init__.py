"""Audience safety: a classifier over violence, gore, sexual content, self-harm, substances,
profanity and hate (with severity), a per-audience policy, reports and repair.

Importing this package loads nothing; `SafetyChecker.load()` loads MiniLM (shared with the emotion
model) and the head on first use.
"""

from .checker import Finding, Repair, SafetyChecker, SafetyReport, SentenceVerdict
from .labels import CATEGORIES, CLASSES, UNSAFE
from .model import SafetyModel
from .policy import AUDIENCES, action_for, load_policy

__all__ = [
    "CATEGORIES",
    "CLASSES",
    "UNSAFE",
    "AUDIENCES",
    "SafetyChecker",
    "SafetyModel",
    "SafetyReport",
    "SentenceVerdict",
    "Finding",
    "Repair",
    "action_for",
    "load_policy",
]
