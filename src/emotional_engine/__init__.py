"""emotional-engine: stories with emotional intelligence and cultural sensitivity."""

from emotional_engine.version import __version__

__all__ = ["__version__"]
