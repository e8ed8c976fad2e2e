"""Per-story memory: facts per scene with embeddings, retrieval, a character graph, and the
contradiction check (see facts.py, store.py, contradictions.py, scene.py)."""

from emotional_engine.memory.contradictions import Contradiction, audit, find_contradictions, per_1000_words
from emotional_engine.memory.facts import Fact, extract_facts
from emotional_engine.memory.scene import remember_scene, scene_facts, summarize
from emotional_engine.memory.store import StoryMemory

__all__ = [
    "Contradiction",
    "Fact",
    "audit",
    "StoryMemory",
    "extract_facts",
    "find_contradictions",
    "per_1000_words",
    "remember_scene",
    "scene_facts",
    "summarize",
]
