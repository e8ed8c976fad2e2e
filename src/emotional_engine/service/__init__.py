"""The HTTP service: `create_app(settings)` builds the FastAPI app that `emotional-engine serve` runs."""

from emotional_engine.service.app import create_app

__all__ = ["create_app"]
